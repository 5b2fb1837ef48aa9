"""Mixed-precision training on the CPU with mmengine's optimizer wrapper.

mmengine's ``AmpOptimWrapper`` refuses to start without a GPU (and builds
CUDA's gradient scaler), although ``torch.autocast`` runs bfloat16 on the
CPU and ``torch.amp.GradScaler`` scales losses there (from PyTorch 2.3).
``CPUAwareAmpOptimWrapper`` is ``AmpOptimWrapper`` on an accelerator and,
on a CPU-only host, the same wrapper with the CPU's scaler and bfloat16
autocast: the backward, the skipped steps on non-finite gradients, the
dynamic scale and its place in checkpoints are mmengine's own code.

Usage::

    optim_wrapper = dict(type='CPUAwareAmpOptimWrapper', dtype='bfloat16',
                         optimizer=dict(type='AdamW', lr=1e-4))
"""
import logging
from typing import Union

import torch
from mmengine.logging import print_log
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
            super().__init__(
                loss_scale=loss_scale,
                dtype=dtype,
                use_fsdp=use_fsdp,
                **kwargs)
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
        self.loss_scaler = cpu_grad_scaler(**scaler_args)
        self.cast_dtype = torch.bfloat16


def cpu_loss_scaling_available() -> bool:
    """Whether this PyTorch scales losses on the CPU (from 2.3)."""
    return hasattr(torch.amp, 'GradScaler')


def cpu_grad_scaler(**scaler_args):
    """The CPU's gradient scaler; before PyTorch 2.3, which has none, a
    disabled one (scale 1, every step taken), said once in the log.
    bfloat16 has float32's range, so it trains without loss scaling."""
    if cpu_loss_scaling_available():
        return torch.amp.GradScaler('cpu', **scaler_args)
    print_log(
        f'PyTorch {torch.__version__} has no loss scaling on the CPU '
        '(from 2.3): bfloat16 autocast runs without it (bfloat16 keeps '
        "float32's range, so losses do not underflow)",
        logger='current',
        level=logging.WARNING)
    return torch.cuda.amp.GradScaler(enabled=False)
