"""The oversized depthwise convolution of ParCNetV2.

The math
--------
On a C x H x W feature map, the vertical oversized kernel ``k_h`` holds
``2H - 1`` taps per channel, indexed ``-(H-1) .. H-1`` around its centre, and
is applied with ``H - 1`` zeros of padding on each side::

    z[c, i, j] = sum_{t=0}^{H-1} k_h[c, t - i] * x[c, t, j]

Every output row therefore sees every input row (a global receptive field),
and which tap meets which row depends only on their offset, so the zero
padding encodes absolute position. The horizontal kernel ``k_w`` does the same
along W; ParCNetV2 applies the vertical convolution first, then the horizontal
one (the two commute up to rounding).

The stored kernels have a fixed length ``K = 2m - 1``, where ``m`` is the
stage's map size at the pretraining resolution (111, 55, 27, 13 at 224).
Two modes say how they meet another map size (paper Sec. 3.1;
:func:`fit_kernels`):

- ``'interpolate'``: resize ``k_h`` to ``2H - 1`` and ``k_w`` to ``2W - 1``
  taps by linear interpolation (:mod:`.resize`), so the receptive field
  stays global for any input size and aspect ratio;
- ``'fixed'``: use the stored ``K`` taps with ``K // 2`` zeros of padding, as
  the reference dense-prediction code does; the receptive field is then
  ``K x K``.

At the pretraining size both modes are the same computation.

Implementations
---------------
One computation, evaluated in one of three ways, the same up to rounding:

- :mod:`.direct`: two depthwise convolutions, as the reference code;
- :mod:`.matmul`: Toeplitz matrix products (:mod:`.toeplitz`), and the form
  exporters record, which resizes the kernels in the graph;
- :mod:`.fft`: FFTs, chosen only on request.

:func:`oversized_conv` is the entry point; which implementation runs for
``impl='auto'`` is the rule in :mod:`..registry` (by shape and device).
"""
from typing import Tuple

from torch import Tensor

from .direct import correlate
from .fft import fft_size
from .resize import resize_kernel

KERNEL_MODES = ('interpolate', 'fixed')
IMPLEMENTATIONS = ('auto', 'direct', 'fft', 'matmul')


def fit_kernels(k_h: Tensor, k_w: Tensor, height: int, width: int,
                mode: str) -> Tuple[Tensor, Tensor]:
    """The stored kernels as they meet a ``height`` x ``width`` map: resized
    to ``2 * height - 1`` and ``2 * width - 1`` taps in interpolate mode, as
    stored in fixed mode."""
    if mode == 'interpolate':
        k_h = resize_kernel(k_h, 2 * height - 1, vertical=True)
        k_w = resize_kernel(k_w, 2 * width - 1, vertical=False)
    return k_h, k_w


def oversized_conv(x: Tensor,
                   k_h: Tensor,
                   k_w: Tensor,
                   mode: str = 'interpolate',
                   impl: str = 'auto') -> Tensor:
    """Apply the oversized depthwise convolution to (N, C, H, W) maps with
    stored (C, 1, K_h, 1) and (C, 1, 1, K_w) kernels; ``mode`` as above,
    ``impl`` one of :data:`IMPLEMENTATIONS` (see
    :func:`..registry.apply_oversized_conv`)."""
    from ..registry import apply_oversized_conv  # the rule lives there
    return apply_oversized_conv(x, k_h, k_w, mode, impl)


__all__ = [
    'KERNEL_MODES', 'IMPLEMENTATIONS', 'fit_kernels', 'oversized_conv',
    'resize_kernel', 'correlate', 'fft_size'
]
