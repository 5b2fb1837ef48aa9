from .distributed import (CPUAwareDistributedDataParallel, GlooSyncBatchNorm,
                          promote_sync_batchnorm)
from .hooks import RNGStateHook
from .optimizers import (CPUAwareAmpOptimWrapper,
                         ParCNetV2LayerDecayOptimizerConstructor,
                         PlainGroupsOptimWrapperConstructor)

__all__ = [
    'CPUAwareAmpOptimWrapper', 'CPUAwareDistributedDataParallel',
    'GlooSyncBatchNorm', 'ParCNetV2LayerDecayOptimizerConstructor',
    'PlainGroupsOptimWrapperConstructor', 'RNGStateHook',
    'promote_sync_batchnorm'
]
