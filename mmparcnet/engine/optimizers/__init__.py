from .layer_decay import ParCNetV2LayerDecayOptimizerConstructor

__all__ = ['ParCNetV2LayerDecayOptimizerConstructor']
