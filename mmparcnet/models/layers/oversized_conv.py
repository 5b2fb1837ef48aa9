"""The oversized convolution layer (the math: :mod:`..ops.oversized`)."""
from typing import Optional

import torch.nn as nn
from torch import Tensor

from ..ops.oversized import (IMPLEMENTATIONS, KERNEL_MODES, correlate,
                             fit_kernels, oversized_conv, resize_kernel)
from ..ops.registry import choose_oversized_conv
from .geometry import stage_map_sizes, stored_kernel_lengths

# oversized_conv, resize_kernel and the geometry lived in this module before:
# still importable from here
__all__ = [
    'OversizedConv', 'oversized_conv', 'resize_kernel', 'stage_map_sizes',
    'stored_kernel_lengths'
]


class OversizedConv(nn.Module):
    """Vertical then horizontal oversized depthwise convolution.

    The kernels live in two bias-free ``Conv2d`` modules (``conv_h``,
    ``conv_w``) so that their names and shapes match the checkpoints and the
    ``Conv2d`` initialisers reach them.

    Args:
        channels (int): number of channels.
        kernel_length (int): stored kernel length K (odd).
        kernel_mode (str): ``'interpolate'`` (resized to the map) or
            ``'fixed'`` (as stored). Defaults to ``'interpolate'``.
        impl (str): ``'auto'``, ``'direct'``, ``'matmul'`` or ``'fft'``
            (:class:`~..ops.registry.OversizedConvChoice`). Defaults to
            ``'auto'``.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_length: int,
                 kernel_mode: str = 'interpolate',
                 impl: str = 'auto',
                 fast_paths: Optional[bool] = None):
        super().__init__()
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f'unknown kernel_mode {kernel_mode!r}; expected '
                             f'one of {KERNEL_MODES}')
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f'unknown oversized_conv_impl {impl!r}; '
                             f'expected one of {IMPLEMENTATIONS}')
        self.conv_h = nn.Conv2d(
            channels,
            channels, (kernel_length, 1),
            padding=(kernel_length // 2, 0),
            groups=channels,
            bias=False)
        self.conv_w = nn.Conv2d(
            channels,
            channels, (1, kernel_length),
            padding=(0, kernel_length // 2),
            groups=channels,
            bias=False)
        self.kernel_mode = kernel_mode
        self.impl = impl
        self.set_fast_paths(fast_paths)

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose how this layer is computed (None: the process-wide
        switch)."""
        self.compute = choose_oversized_conv(self.impl, enabled)

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(x, self.conv_h.weight, self.conv_w.weight,
                            self.kernel_mode)

    def plain_forward(self, x: Tensor) -> Tensor:
        """The kernels fitted to the (N, C, H, W) map, then two depthwise
        convolutions (the reference code's computation)."""
        k_h, k_w = fit_kernels(self.conv_h.weight, self.conv_w.weight,
                               x.shape[-2], x.shape[-1], self.kernel_mode)
        return correlate(x, k_h, k_w)

    def extra_repr(self) -> str:
        return f'kernel_mode={self.kernel_mode!r}, impl={self.impl!r}'
