from .amp import CPUAwareAmpOptimWrapper
from .layer_decay import ParCNetV2LayerDecayOptimizerConstructor
from .plain_groups import (PlainGroupsOptimWrapperConstructor,
                           plain_param_groups)

__all__ = [
    'CPUAwareAmpOptimWrapper', 'ParCNetV2LayerDecayOptimizerConstructor',
    'PlainGroupsOptimWrapperConstructor', 'plain_param_groups'
]
