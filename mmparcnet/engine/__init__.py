from .hooks import RNGStateHook
from .optimizers import ParCNetV2LayerDecayOptimizerConstructor

__all__ = ['ParCNetV2LayerDecayOptimizerConstructor', 'RNGStateHook']
