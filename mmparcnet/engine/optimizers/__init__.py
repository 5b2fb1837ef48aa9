from .amp import CPUAwareAmpOptimWrapper
from .layer_decay import ParCNetV2LayerDecayOptimizerConstructor

__all__ = [
    'CPUAwareAmpOptimWrapper', 'ParCNetV2LayerDecayOptimizerConstructor'
]
