"""The oversized convolution by FFT, O(HW log HW).

A zero-padded "same" correlation whose kernel reaches r taps each way equals
a circular correlation of any length N >= H + r (the wrapped-around taps
only ever meet the padding). So the map is padded to N_h x N_w (about
2H x 2W), and one 2-D real FFT, a product with the kernel spectrum, and one
inverse FFT give the result. The separable kernel's spectrum is the outer
product of its two 1-D spectra.

It computes in float32 (float64 for float64 input) whatever the input type,
also under fp16/bf16 autocast, and returns the input type: half-precision
FFTs lose too much and need power-of-two sizes. Eagerly a custom autograd
function saves the inputs rather than the spectra and recomputes them in the
backward pass; tracers get the forward pass in differentiable operators.

The automatic choice never takes it (on the CPU and on an H200 it was not
the fastest path at any stage shape of ParCNetV2-T, docs/speed.md); it is
kept for ``oversized_conv_impl='fft'``, tested against the direct path.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..context import Context


def fft_size(n: int) -> int:
    """The smallest integer >= n whose prime factors are 2, 3, 5 and 7 (the
    sizes pocketfft and cuFFT handle fastest)."""
    size = max(n, 1)
    while True:
        rest = size
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _reach(taps: int, size: int) -> int:
    """How far a centred kernel of ``taps`` taps reaches on a map of
    ``size``: taps beyond size - 1 never meet the map."""
    return min(taps // 2, size - 1)


def _circular(kernel: Tensor, length: int, size: int) -> Tensor:
    """Lay (C, K) centred kernels out for a circular correlation of
    ``length``: offset d goes to index d mod length. Taps that cannot meet
    a map of ``size`` are dropped first (they would wrap onto real ones)."""
    taps = kernel.shape[1]
    centre, reach = taps // 2, _reach(taps, size)
    kernel = kernel.narrow(1, centre - reach, 2 * reach + 1)
    kernel = F.pad(kernel, (0, length - 2 * reach - 1))
    return kernel.roll(-reach, dims=1)


def _taps(circular: Tensor, taps: int, size: int) -> Tensor:
    """Inverse of :func:`_circular` on the last axis: the values at offsets
    -taps//2 .. taps//2 (zeros for taps that cannot meet a map of
    ``size``)."""
    centre, reach = taps // 2, _reach(taps, size)
    values = circular.roll(reach, dims=-1).narrow(-1, 0, 2 * reach + 1)
    return F.pad(values, (centre - reach, taps - centre - reach - 1))


def _fft_shape(x: Tensor, k_h: Tensor, k_w: Tensor) -> Tuple[int, int]:
    height, width = x.shape[-2:]
    return (fft_size(height + _reach(k_h.shape[-2], height)),
            fft_size(width + _reach(k_w.shape[-1], width)))


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _spectra(k_h: Tensor, k_w: Tensor, size: Tuple[int, int],
             shape: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """The 1-D spectra of the circular kernels, (C, N_h) and
    (C, N_w // 2 + 1)."""
    (height, width), (n_h, n_w) = size, shape
    c_h = _circular(k_h[:, 0, :, 0], n_h, height)
    c_w = _circular(k_w[:, 0, 0, :], n_w, width)
    return torch.fft.fft(c_h, dim=1), torch.fft.rfft(c_w, dim=1)


def _kernel_spectrum(k_h: Tensor, k_w: Tensor, size, shape) -> Tensor:
    """conj of the 2-D spectrum of k_h outer k_w, (C, N_h, N_w // 2 + 1);
    the conjugate because a correlation is a convolution with the reversed
    kernel."""
    spectrum_h, spectrum_w = _spectra(k_h, k_w, size, shape)
    return (spectrum_h[:, :, None] * spectrum_w[:, None, :]).conj()


def fft_correlation(x: Tensor, k_h: Tensor, k_w: Tensor) -> Tensor:
    """The forward pass in differentiable operators, in the computation
    type (float32 or float64)."""
    height, width = x.shape[-2:]
    shape = _fft_shape(x, k_h, k_w)
    dtype = _compute_dtype(x)
    kernel = _kernel_spectrum(
        k_h.to(dtype), k_w.to(dtype), (height, width), shape)
    spectrum = torch.fft.rfft2(x.to(dtype), s=shape) * kernel
    return torch.fft.irfft2(spectrum, s=shape)[..., :height, :width]


class _FFTCorrelation(torch.autograd.Function):
    """:func:`fft_correlation` returning the input type, saving the inputs
    and recomputing the spectra in the backward pass."""

    @staticmethod
    def forward(ctx, x, k_h, k_w):
        ctx.dtypes = (x.dtype, k_h.dtype, k_w.dtype)
        ctx.save_for_backward(x, k_h, k_w)
        with torch.autocast(x.device.type, enabled=False):
            return fft_correlation(x, k_h, k_w).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, k_h, k_w = ctx.saved_tensors
        with torch.autocast(grad.device.type, enabled=False):
            grads = _backward(grad, x, k_h, k_w, ctx.needs_input_grad)
        return tuple(None if g is None else g.to(dtype)
                     for g, dtype in zip(grads, ctx.dtypes))


def _backward(grad, x, k_h, k_w, needs):
    height, width = x.shape[-2:]
    n_h, n_w = shape = _fft_shape(x, k_h, k_w)
    dtype = _compute_dtype(x)
    k_h, k_w = k_h.to(dtype), k_w.to(dtype)
    grad_spectrum = torch.fft.rfft2(grad.to(dtype), s=shape)
    grad_x = grad_h = grad_w = None
    if needs[0]:
        # the adjoint of a correlation is the convolution with the same
        # kernel: multiply by the spectrum itself, not its conjugate
        kernel = _kernel_spectrum(k_h, k_w, (height, width), shape).conj()
        grad_x = torch.fft.irfft2(
            grad_spectrum * kernel, s=shape)[..., :height, :width]
    if needs[1] or needs[2]:
        # d loss / d c[m] = sum_i g[i] x[i + m]: the correlation of x with
        # the gradient, summed over the batch, at every circular offset m;
        # read off at the offsets each kernel covers
        cross = torch.fft.irfft2(
            (torch.fft.rfft2(x.to(dtype), s=shape) *
             grad_spectrum.conj()).sum(0),
            s=shape)
        c_h = _circular(k_h[:, 0, :, 0], n_h, height)
        c_w = _circular(k_w[:, 0, 0, :], n_w, width)
        if needs[1]:
            grad_h = _taps(
                torch.einsum('chw,cw->ch', cross, c_w), k_h.shape[-2],
                height)[:, None, :, None]
        if needs[2]:
            grad_w = _taps(
                torch.einsum('chw,ch->cw', cross, c_h), k_w.shape[-1],
                width)[:, None, None, :]
    return grad_x, grad_h, grad_w


def fft(x: Tensor, k_h: Tensor, k_w: Tensor, ctx: Context) -> Tensor:
    """The correlation of (N, C, H, W) maps with kernels already fitted to
    the map, by FFT, in ``x``'s type."""
    if ctx.tracer:  # plain ops for them
        with torch.autocast(ctx.device, enabled=False):
            return fft_correlation(x, k_h, k_w).to(x.dtype)
    return _FFTCorrelation.apply(x, k_h, k_w)
