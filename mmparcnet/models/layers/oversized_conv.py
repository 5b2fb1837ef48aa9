"""The oversized depthwise convolution of ParCNetV2, every way it is computed.

The math
--------
On a C x H x W feature map, the vertical oversized kernel ``k_h`` holds
``2H - 1`` taps per channel, indexed ``-(H-1) .. H-1`` around its centre, and is
applied with ``H - 1`` zeros of padding on each side::

    z[c, i, j] = sum_{t=0}^{H-1} k_h[c, t - i] * x[c, t, j]

Every output row therefore sees every input row (a global receptive field),
and which tap meets which row depends only on their offset, so the zero
padding encodes absolute position. The horizontal kernel ``k_w`` does the same
along W; ParCNetV2 applies the vertical convolution first, then the horizontal
one (the two commute up to rounding).

The stored kernels have a fixed length ``K = 2m - 1``, where ``m`` is the
stage's map size at the pretraining resolution (111, 55, 27, 13 at 224).
Two modes say how they meet another map size (paper Sec. 3.1):

- ``'interpolate'``: resize ``k_h`` to ``2H - 1`` and ``k_w`` to ``2W - 1`` taps by
  linear interpolation (``align_corners=True``, as the reference code's
  ``F.interpolate(..., mode='bilinear', align_corners=True)``), so the
  receptive field stays global for any input size and aspect ratio;
- ``'fixed'``: use the stored ``K`` taps with ``K // 2`` zeros of padding, as the
  reference dense-prediction code does; the receptive field is then ``K x K``.

At the pretraining size both modes are the same computation.

Implementations
---------------
:func:`oversized_conv` is the one entry point the backbone calls; ``impl``
picks how the convolution is evaluated. ``'direct'`` runs two depthwise
``F.conv2d`` calls with the (resized) kernels, exactly as the reference code;
it is the reference every other implementation is tested against.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

KERNEL_MODES = ('interpolate', 'fixed')
IMPLEMENTATIONS = ('auto', 'direct')


def stage_map_sizes(image_size: int, num_stages: int = 4) -> Tuple[int, ...]:
    """Side length of each stage's feature map for a square input.

    The stem is ``Conv2d(k=7, s=4, p=2)`` and every later stage halves the map
    with ``Conv2d(k=3, s=2, p=1)``, so 224 gives (56, 28, 14, 7).
    """
    sizes = []
    size = (image_size + 2 * 2 - 7) // 4 + 1
    for _ in range(num_stages):
        if size < 1:
            raise ValueError(f'an input of {image_size} pixels leaves no '
                             f'feature map for {num_stages} stages')
        sizes.append(size)
        size = (size + 2 * 1 - 3) // 2 + 1
    return tuple(sizes)


def stored_kernel_lengths(pretrain_size: int,
                          num_stages: int = 4) -> Tuple[int, ...]:
    """Oversized kernel length of each stage, ``2m - 1`` for map size ``m``.

    224 gives (111, 55, 27, 13), the lengths of the published checkpoints.
    """
    return tuple(2 * m - 1 for m in stage_map_sizes(pretrain_size, num_stages))


def resize_kernel(weight: Tensor, length: int, vertical: bool) -> Tensor:
    """Resize a 1-D oversized kernel to ``length`` taps.

    Args:
        weight (Tensor): a depthwise kernel of shape (C, 1, K, 1) (vertical)
            or (C, 1, 1, K) (horizontal).
        length (int): the number of taps wanted.
        vertical (bool): whether ``weight`` is the vertical kernel.

    Returns:
        Tensor: the kernel in the same layout with ``length`` taps, linearly
        interpolated with ``align_corners=True`` (the two end taps stay where
        they are). Like the reference ``F.interpolate`` call, a length of 1
        keeps the first tap.
    """
    taps = weight.shape[-2] if vertical else weight.shape[-1]
    if taps == length:
        return weight
    channels = weight.shape[0]
    resized = F.interpolate(
        weight.reshape(channels, 1, taps), size=length, mode='linear',
        align_corners=True)
    if vertical:
        return resized.reshape(channels, 1, length, 1)
    return resized.reshape(channels, 1, 1, length)


def _direct(x: Tensor, k_h: Tensor, k_w: Tensor, pad_h: int,
            pad_w: int) -> Tensor:
    channels = x.shape[1]
    x = F.conv2d(x, k_h, padding=(pad_h, 0), groups=channels)
    return F.conv2d(x, k_w, padding=(0, pad_w), groups=channels)


def oversized_conv(x: Tensor,
                   k_h: Tensor,
                   k_w: Tensor,
                   mode: str = 'interpolate',
                   impl: str = 'auto') -> Tensor:
    """Apply ParCNetV2's oversized depthwise convolution.

    Args:
        x (Tensor): input of shape (N, C, H, W), any memory format.
        k_h (Tensor): stored vertical kernel, shape (C, 1, K_h, 1).
        k_w (Tensor): stored horizontal kernel, shape (C, 1, 1, K_w).
        mode (str): ``'interpolate'`` or ``'fixed'`` (see the module
            docstring). Defaults to ``'interpolate'``.
        impl (str): ``'direct'`` or ``'auto'`` (the best available for the
            shape and device). Defaults to ``'auto'``.

    Returns:
        Tensor: output of shape (N, C, H, W).
    """
    if mode not in KERNEL_MODES:
        raise ValueError(f'unknown oversized kernel mode {mode!r}; '
                         f'expected one of {KERNEL_MODES}')
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'unknown oversized convolution implementation '
                         f'{impl!r}; expected one of {IMPLEMENTATIONS}')
    height, width = x.shape[-2:]
    if mode == 'interpolate':
        k_h = resize_kernel(k_h, 2 * height - 1, vertical=True)
        k_w = resize_kernel(k_w, 2 * width - 1, vertical=False)
    return _direct(x, k_h, k_w, k_h.shape[-2] // 2, k_w.shape[-1] // 2)
