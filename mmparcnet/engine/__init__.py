from .distributed import (CPUAwareDistributedDataParallel, GlooSyncBatchNorm,
                          promote_sync_batchnorm)
from .hooks import RNGStateHook
from .optimizers import (CPUAwareAmpOptimWrapper,
                         ParCNetV2LayerDecayOptimizerConstructor)

__all__ = [
    'CPUAwareAmpOptimWrapper', 'CPUAwareDistributedDataParallel',
    'GlooSyncBatchNorm', 'ParCNetV2LayerDecayOptimizerConstructor',
    'RNGStateHook', 'promote_sync_batchnorm'
]
