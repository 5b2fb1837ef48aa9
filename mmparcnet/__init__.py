"""ParCNetV2 for OpenMMLab 2.0.

``import mmparcnet`` (or ``custom_imports=dict(imports=['mmparcnet'])`` in a
config) registers the ``ParCNetV2`` backbone and the optimizer wrapper
constructors ``ParCNetV2LayerDecayOptimizerConstructor`` and
``PlainGroupsOptimWrapperConstructor`` (for ``compile=True``) in mmengine,
MMDetection, MMSegmentation and MMPretrain, with the engine's helpers
(``RNGStateHook`` for exact resumption, ``CPUAwareAmpOptimWrapper``,
``CPUAwareDistributedDataParallel``), makes mmengine's checkpoints load
safely on PyTorch >= 2.6 (see :mod:`mmparcnet.checkpoint.safe_io`) and
mmengine's ``pytorch`` launcher work on hosts without a GPU (see
:mod:`mmparcnet.engine.distributed`).
"""
from .checkpoint.safe_io import install as _install_checkpoint_safety
from .engine import (CPUAwareAmpOptimWrapper, CPUAwareDistributedDataParallel,
                     ParCNetV2LayerDecayOptimizerConstructor,
                     PlainGroupsOptimWrapperConstructor, RNGStateHook)
from .engine.distributed import install as _install_cpu_distributed
from .models import ParCNetV2
from .models.ops import fast_paths, fast_paths_enabled, set_fast_paths
from .registry import register
from .version import __version__

_install_checkpoint_safety()
_install_cpu_distributed()
REGISTERED_IN = register('MODELS', ParCNetV2)
register('OPTIM_WRAPPER_CONSTRUCTORS', ParCNetV2LayerDecayOptimizerConstructor,
         PlainGroupsOptimWrapperConstructor)
register('HOOKS', RNGStateHook)
register('OPTIM_WRAPPERS', CPUAwareAmpOptimWrapper)
register('MODEL_WRAPPERS', CPUAwareDistributedDataParallel)

__all__ = [
    'CPUAwareAmpOptimWrapper', 'CPUAwareDistributedDataParallel', 'ParCNetV2',
    'ParCNetV2LayerDecayOptimizerConstructor',
    'PlainGroupsOptimWrapperConstructor', 'RNGStateHook', '__version__',
    'REGISTERED_IN', 'fast_paths', 'fast_paths_enabled', 'set_fast_paths'
]
