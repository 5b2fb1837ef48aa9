"""The direct oversized convolution: two depthwise convolutions.

Exactly the reference code's computation. It costs HW(2H + 2W)
multiply-adds per channel in interpolate mode, which dominates the whole
network on detection-size inputs; on small maps it is the fastest.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from ..context import Context


def correlate(x: Tensor, k_h: Tensor, k_w: Tensor) -> Tensor:
    """The vertical then the horizontal "same" depthwise correlation of
    (N, C, H, W) maps with (C, 1, K_h, 1) and (C, 1, 1, K_w) kernels."""
    channels = x.shape[1]
    out = F.conv2d(x, k_h, padding=(k_h.shape[-2] // 2, 0), groups=channels)
    return F.conv2d(out, k_w, padding=(0, k_w.shape[-1] // 2), groups=channels)


def direct(x: Tensor, k_h: Tensor, k_w: Tensor, ctx: Context) -> Tensor:
    """:func:`correlate`, on the CPU from channels-last memory: oneDNN's
    depthwise kernels with long taps are several times faster there than
    on planes, far more than the copy costs."""
    if ctx.device == 'cpu':
        x = x.contiguous(memory_format=torch.channels_last)
    return correlate(x, k_h, k_w)
