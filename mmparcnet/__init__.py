"""ParCNetV2 for OpenMMLab 2.0.

``import mmparcnet`` (or ``custom_imports=dict(imports=['mmparcnet'])`` in a
config) registers the ``ParCNetV2`` backbone and the
``ParCNetV2LayerDecayOptimizerConstructor`` in mmengine, MMDetection,
MMSegmentation and MMPretrain, and makes mmengine's checkpoints load safely
on PyTorch >= 2.6 (see :mod:`mmparcnet.checkpoint.safe_io`).
"""
from .checkpoint.safe_io import install as _install_checkpoint_safety
from .engine import ParCNetV2LayerDecayOptimizerConstructor, RNGStateHook
from .models import ParCNetV2
from .registry import register
from .version import __version__

_install_checkpoint_safety()
REGISTERED_IN = register('MODELS', ParCNetV2)
register('OPTIM_WRAPPER_CONSTRUCTORS',
         ParCNetV2LayerDecayOptimizerConstructor)
register('HOOKS', RNGStateHook)

__all__ = [
    'ParCNetV2', 'ParCNetV2LayerDecayOptimizerConstructor', 'RNGStateHook',
    '__version__', 'REGISTERED_IN'
]
