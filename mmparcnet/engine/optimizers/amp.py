"""Mixed-precision training on the CPU with mmengine's optimizer wrapper.

mmengine's ``AmpOptimWrapper`` refuses to start without a GPU (and builds
CUDA's gradient scaler), although ``torch.autocast`` runs bfloat16 on the
CPU and ``torch.amp.GradScaler`` scales losses there. ``CPUAwareAmpOptimWrapper``
is ``AmpOptimWrapper`` on an accelerator and, on a CPU-only host, the same
wrapper with the CPU's scaler and bfloat16 autocast: the backward, the
skipped steps on non-finite gradients, the dynamic scale and its place in
checkpoints are mmengine's own code.

Usage::

    optim_wrapper = dict(type='CPUAwareAmpOptimWrapper', dtype='bfloat16',
                         optimizer=dict(type='AdamW', lr=1e-4))
"""
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from ..distributed import accelerator_available


class CPUAwareAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also trains on the CPU in bfloat16.

    Args:
        loss_scale (str | float | dict): ``'dynamic'``, a static scale, or the
            arguments of ``torch.amp.GradScaler``. Defaults to ``'dynamic'``.
        dtype (str | torch.dtype, optional): the autocast dtype. On the CPU
            only bfloat16 (the default there) is allowed. Defaults to None.
        use_fsdp (bool): see ``AmpOptimWrapper`` (accelerators only).
            Defaults to False.
        **kwargs: the arguments of ``OptimWrapper``.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 **kwargs):
        if accelerator_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype,
                             use_fsdp=use_fsdp, **kwargs)
            return
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError('CPU autocast computes in bfloat16 only; got '
                             f'dtype={dtype!r} on a host without a GPU')
        if use_fsdp:
            raise ValueError('use_fsdp=True needs GPUs')
        if loss_scale == 'dynamic':
            scaler_args, self._scale_update_param = {}, None
        elif isinstance(loss_scale, float):
            scaler_args = dict(init_scale=loss_scale)
            self._scale_update_param = loss_scale
        elif isinstance(loss_scale, dict):
            scaler_args, self._scale_update_param = dict(loss_scale), None
        else:
            raise TypeError('loss_scale must be "dynamic", a float or a dict, '
                            f'got {loss_scale!r}')
        OptimWrapper.__init__(self, **kwargs)
        self.loss_scaler = torch.amp.GradScaler('cpu', **scaler_args)
        self.cast_dtype = torch.bfloat16
