"""The oversized depthwise convolution of ParCNetV2, every way it is computed.

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
Two modes say how they meet another map size (paper Sec. 3.1):

- ``'interpolate'``: resize ``k_h`` to ``2H - 1`` and ``k_w`` to ``2W - 1``
  taps by linear interpolation (``align_corners=True``, as the reference code's
  ``F.interpolate(..., mode='bilinear', align_corners=True)``), so the
  receptive field stays global for any input size and aspect ratio;
- ``'fixed'``: use the stored ``K`` taps with ``K // 2`` zeros of padding, as
  the reference dense-prediction code does; the receptive field is then
  ``K x K``.

At the pretraining size both modes are the same computation.

Implementations
---------------
:func:`oversized_conv` is the one entry point the backbone calls; ``impl``
picks how it is evaluated, and the result is the same up to rounding:

- ``'direct'``: two depthwise ``F.conv2d`` calls with the (resized) kernels,
  exactly as the reference code. It costs HW(2H + 2W) multiply-adds per
  channel, which dominates the whole network on detection-size inputs.
- ``'fft'``: a zero-padded "same" correlation whose kernel reaches r taps
  each way equals a circular correlation of any length N >= H + r (the
  wrapped-around taps only ever meet the padding). So the map is padded to
  N_h x N_w (about 2H x 2W), and one 2-D real FFT, a product with the
  kernel spectrum, and one inverse FFT give the result in O(HW log HW). The
  separable kernel's spectrum is the outer product of its two 1-D spectra,
  and a local depthwise kernel passed as ``local_kernel`` (such as the
  block's 7x7 one) rides in the same spectrum for free. A custom autograd
  function computes in float32 (also under fp16/bf16 autocast, returning the
  input dtype) and saves its inputs rather than spectra, recomputing them in
  the backward.
- ``'matmul'``: each 1-D correlation as a product with its Toeplitz matrix
  ``T[i, t] = k[t - i + centre]``: per channel ``T_h @ X @ T_w^T``, two
  batched GEMMs. That is H + W multiply-adds per output element, half the
  direct path's (which also multiplies the padding), and GEMMs run near the
  machine's peak where depthwise convolutions with long kernels do not: on
  the CPU it is the fastest path at detection sizes. Eagerly the Toeplitz
  matrices are the kernel's sliding windows (strided views), reversed in one
  copy, and the map is taken as channel-major planes (C, N, H, W), the
  layout the backbone hands over, so that both products are plain ``bmm``
  calls. For the backward pass a custom autograd function keeps the kernels
  and builds the matrices again, where autograd would keep the matrices (as
  large as the map itself at detection sizes). While exporting, the
  kernels are resized in the graph and the matrices gathered from them by
  a computed index (:func:`_traced_matmul`), so the graph holds no operator
  whose shape depends on the input: convolutions with an input-sized kernel
  ("kernel of unknown shape") and FFTs have no ONNX export with dynamic
  sizes, matrix products, resizes and gathers do. That is what
  ``torch.onnx.export`` (legacy or dynamo) records, so an exported graph
  resizes the kernels for whatever input it gets (docs/speed.md, on what
  ONNX Runtime runs fastest).
- ``'auto'``: ``'direct'`` where the fast paths are off (:mod:`.runtime`);
  otherwise the path measured fastest for the shape on that device
  (:func:`choose_impl`; the choice depends only on the shape, the device
  type and whether gradients are needed); ``'matmul'`` while the model is
  being exported.
"""
import contextlib
import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .runtime import (autocast_dtype, fast_paths_enabled, is_compiling,
                      is_exporting, traced_size)

KERNEL_MODES = ('interpolate', 'fixed')
IMPLEMENTATIONS = ('auto', 'direct', 'fft', 'matmul')

# The fastest path per device type and pass (``'forward'`` alone, or
# ``'training'``: forward and backward), as ``(impl, min_taps,
# min_elements)`` rules tried in order; ``'direct'`` where none applies.
# ``taps`` is the number of kernel taps that meet the map (2H-1 + 2W-1 in
# interpolate mode): the direct path costs that many multiply-adds per output
# element (about three times that with the backward), the matmul path H + W
# in GEMMs, the FFT about a constant times log(HW) plus fixed launch costs.
# Unknown device types use the CPU rules. On the CPU the GEMMs win from about
# 40 taps and the FFT never does. On CUDA (an H200, batch 2, 800x1216, two
# runs) the GEMMs win at stages 0 and 1 (1006 and 502 taps: 1.7-2.4 ms
# forward+backward in fp32 against the FFT's 2.3-3.2 and the direct path's
# 5.3-19.9), stage 2 (250 taps) is a tie with the direct path (1.9 against
# 2.3 ms in one run, 2.4 against 2.1 in the other), and the direct path
# wins at stage 3 (124 taps: 1.0-1.1 ms against 1.9). The rules do not
# depend on the type: with them the whole backbone was on a par with the
# matmul path forced (1-3% either way, in one run) and faster than the
# direct and FFT paths, in fp32 and bf16, forward and training. The
# measurements: docs/speed.md, "Where the code's choices come from".
FAST_PATHS = {
    ('cpu', 'forward'): [('matmul', 40, 0)],
    ('cpu', 'training'): [('matmul', 40, 0)],
    ('cuda', 'forward'): [('matmul', 200, 0)],
    ('cuda', 'training'): [('matmul', 200, 0)],
}


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
    resized = _resize_1d(weight.reshape(channels, taps), length)
    return resized.reshape(weight.shape[:2] +
                           ((length, 1) if vertical else (1, length)))


def _resize_1d(kernel: Tensor, length) -> Tensor:
    """(C, K) kernels to (C, length) taps, ``length`` possibly symbolic.

    Three forms of one computation: ``F.interpolate`` on the CPU and for the
    tracing (legacy) ONNX exporter, which records it as one Resize node; a
    product with the interpolation matrix on other devices
    (:func:`_interpolation_matrix`), since CUDA's ``upsample_linear1d``
    backward has no deterministic implementation (training with
    ``torch.use_deterministic_algorithms(True)``, as mmengine's
    ``randomness=dict(deterministic=True)`` sets, stops at it) and spends
    about 0.1 ms per kernel on threads that loop over the channels; index
    arithmetic (:func:`_resize_taps`) under Dynamo (``torch.compile``,
    ``torch.export``, the dynamo ONNX exporter): before PyTorch 2.3 it
    cannot trace ``F.interpolate`` to a symbolic size, and its decomposition
    divides by length - 1, zero on one-pixel maps.
    """
    if is_compiling():
        return _resize_taps(kernel, length)
    if kernel.device.type == 'cpu' or torch.jit.is_tracing():
        resized = F.interpolate(
            kernel[:, None], size=length, mode='linear', align_corners=True)
        return resized[:, 0]
    return _resize_by_matrix(kernel, length)


def _resize_by_matrix(kernel: Tensor, length: int) -> Tensor:
    """(C, K) kernels to (C, length) taps as one matrix product, in the
    kernels' type also under autocast (with TF32 matrix products switched
    on, the resize is TF32 too, as every other product of the network)."""
    build = (
        _cached_interpolation_matrix
        if _cacheable(kernel, length) else _interpolation_matrix)
    matrix = build(kernel.shape[1], length, kernel.device, kernel.dtype)
    keep_type = (
        torch.autocast(kernel.device.type, enabled=False) if
        autocast_dtype(kernel) != kernel.dtype else contextlib.nullcontext())
    with keep_type:
        return kernel @ matrix


def _cacheable(kernel: Tensor, length) -> bool:
    """Whether the matrix for ``kernel`` may be kept: a real tensor (not a
    fake or other subclass a tracer passes), a concrete length, and not
    while a CUDA graph is being captured (its memory would belong to the
    graph)."""
    if type(kernel) is not torch.Tensor or not isinstance(length, int):
        return False
    return not (kernel.is_cuda and torch.cuda.is_current_stream_capturing())


def _interpolation_matrix(taps: int, length: int, device: torch.device,
                          dtype: torch.dtype) -> Tensor:
    """The (taps, length) matrix M with ``kernel @ M`` the (C, taps) kernels
    linearly resized to ``length`` taps, ``align_corners=True``: column j
    holds the weights 1 - f and f at rows i and i + 1, where
    j * (taps - 1) / (length - 1) = i + f (positions in float64 where the
    device has it, float32 as ``F.interpolate`` otherwise); a single column
    keeps the first tap.

    Built on the device itself (no copy from the host), and outside
    inference mode, so that a matrix first made under
    ``torch.inference_mode()`` can still be saved for a later backward pass.
    """
    positions = (
        torch.float64 if device.type in ('cpu', 'cuda') else torch.float32)
    with torch.inference_mode(False), torch.no_grad():
        matrix = torch.zeros(taps, length, dtype=dtype, device=device)
        if taps == 1:
            matrix[0] = 1.
            return matrix
        low, weight = _lerp_positions(taps, length, device, positions)
        columns = torch.arange(length, device=device)
        matrix[low, columns] = (1 - weight).to(dtype)
        matrix[low + 1, columns] = weight.to(dtype)
        return matrix


# a few per stage and input size; bounded for multi-scale training
_cached_interpolation_matrix = functools.lru_cache(maxsize=128)(
    _interpolation_matrix)


def _local(x: Tensor, local_kernel: Tensor) -> Tensor:
    return F.conv2d(
        x,
        local_kernel,
        padding=(local_kernel.shape[-2] // 2, local_kernel.shape[-1] // 2),
        groups=x.shape[1])


def _direct(x: Tensor, k_h: Tensor, k_w: Tensor,
            local_kernel: Optional[Tensor]) -> Tensor:
    channels = x.shape[1]
    if x.device.type == 'cpu':
        # oneDNN's depthwise kernels with long taps are several times
        # faster channels-last than on planes, far more than the copy costs
        x = x.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x, k_h, padding=(k_h.shape[-2] // 2, 0), groups=channels)
    out = F.conv2d(out, k_w, padding=(0, k_w.shape[-1] // 2), groups=channels)
    if local_kernel is not None:
        out = out + _local(x, local_kernel)
    return out


# -- FFT path -----------------------------------------------------------------


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


def _circular(kernel: Tensor, length: int, dim: int, size: int) -> Tensor:
    """Lay a centred kernel out for a circular correlation of ``length``:
    offset d goes to index d mod length. Taps that cannot meet a map of
    ``size`` are dropped first (they would wrap onto real ones)."""
    taps = kernel.shape[dim]
    centre, reach = taps // 2, _reach(taps, size)
    kernel = kernel.narrow(dim, centre - reach, 2 * reach + 1)
    pad = [0, 0] * (kernel.dim() - (dim % kernel.dim()) - 1)
    kernel = F.pad(kernel, pad + [0, length - 2 * reach - 1])
    return kernel.roll(-reach, dims=dim)


def _kernel_spectrum(k_h: Tensor, k_w: Tensor, local_kernel: Optional[Tensor],
                     size: Tuple[int, int], fft_shape: Tuple[int, int]):
    """conj of the 2-D spectrum of (k_h outer k_w) [+ local_kernel], (C, Nh,
    Nw // 2 + 1); the conjugate because a correlation is a convolution with
    the reversed kernel."""
    (height, width), (n_h, n_w) = size, fft_shape
    c_h = _circular(k_h[:, 0, :, 0], n_h, 1, height)
    c_w = _circular(k_w[:, 0, 0, :], n_w, 1, width)
    spectrum = torch.fft.fft(
        c_h, dim=1)[:, :, None] * torch.fft.rfft(
            c_w, dim=1)[:, None, :]
    if local_kernel is not None:
        local = _circular(local_kernel[:, 0], n_h, 1, height)
        local = _circular(local, n_w, 2, width)
        spectrum = spectrum + torch.fft.rfft2(local)
    return spectrum.conj()


def _fft_shape(x: Tensor, k_h: Tensor, k_w: Tensor,
               local_kernel: Optional[Tensor]) -> Tuple[int, int]:
    height, width = x.shape[-2:]
    reach_h = _reach(k_h.shape[-2], height)
    reach_w = _reach(k_w.shape[-1], width)
    if local_kernel is not None:
        reach_h = max(reach_h, _reach(local_kernel.shape[-2], height))
        reach_w = max(reach_w, _reach(local_kernel.shape[-1], width))
    return fft_size(height + reach_h), fft_size(width + reach_w)


def _compute_dtype(x: Tensor) -> torch.dtype:
    # half precision FFTs lose too much (and need power-of-two sizes)
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _fft_correlation(x: Tensor, k_h: Tensor, k_w: Tensor,
                     local_kernel: Optional[Tensor]) -> Tensor:
    """The FFT path's forward pass in differentiable operators (in the
    computation type; :class:`_FFTCorrelation` casts back)."""
    height, width = x.shape[-2:]
    shape = _fft_shape(x, k_h, k_w, local_kernel)
    dtype = _compute_dtype(x)
    kernel = _kernel_spectrum(
        k_h.to(dtype), k_w.to(dtype),
        None if local_kernel is None else local_kernel.to(dtype),
        (height, width), shape)
    spectrum = torch.fft.rfft2(x.to(dtype), s=shape) * kernel
    return torch.fft.irfft2(spectrum, s=shape)[..., :height, :width]


class _FFTCorrelation(torch.autograd.Function):
    """Depthwise "same" correlation with (k_h outer k_w) [+ local] by FFT.

    Computes in float32 (float64 for float64 input) whatever the input
    dtype, and returns the input dtype; saves the inputs, not the
    spectra, and recomputes the spectra in the backward pass.
    """

    @staticmethod
    def forward(ctx, x, k_h, k_w, local_kernel):
        ctx.dtypes = (x.dtype, k_h.dtype, k_w.dtype,
                      None if local_kernel is None else local_kernel.dtype)
        ctx.save_for_backward(x, k_h, k_w, local_kernel)
        with torch.autocast(x.device.type, enabled=False):
            return _FFTCorrelation._forward(x, k_h, k_w,
                                            local_kernel).to(x.dtype)

    @staticmethod
    def _forward(x, k_h, k_w, local_kernel):
        return _fft_correlation(x, k_h, k_w, local_kernel)

    @staticmethod
    def backward(ctx, grad):
        x, k_h, k_w, local_kernel = ctx.saved_tensors
        x_dtype, h_dtype, w_dtype, local_dtype = ctx.dtypes
        with torch.autocast(grad.device.type, enabled=False):
            grads = _FFTCorrelation._backward(grad, x, k_h, k_w, local_kernel,
                                              ctx.needs_input_grad)
        grad_x, grad_h, grad_w, grad_local = grads
        return (None if grad_x is None else grad_x.to(x_dtype),
                None if grad_h is None else grad_h.to(h_dtype),
                None if grad_w is None else grad_w.to(w_dtype),
                None if grad_local is None else grad_local.to(local_dtype))

    @staticmethod
    def _backward(grad, x, k_h, k_w, local_kernel, needs):
        height, width = x.shape[-2:]
        n_h, n_w = shape = _fft_shape(x, k_h, k_w, local_kernel)
        dtype = _compute_dtype(x)
        k_h, k_w = k_h.to(dtype), k_w.to(dtype)
        local = None if local_kernel is None else local_kernel.to(dtype)
        grad_spectrum = torch.fft.rfft2(grad.to(dtype), s=shape)
        grad_x = grad_h = grad_w = grad_local = None
        if needs[0]:
            # the adjoint of a correlation is the convolution with the same
            # kernel: multiply by the spectrum itself, not its conjugate
            kernel = _kernel_spectrum(k_h, k_w, local, (height, width),
                                      shape).conj()
            grad_x = torch.fft.irfft2(
                grad_spectrum * kernel, s=shape)[..., :height, :width]
        if any(needs[1:]):
            # d loss / d c[m] = sum_i g[i] x[i + m]: the correlation of x
            # with the gradient, summed over the batch, at every circular
            # offset m; read off at the offsets each kernel covers
            cross = torch.fft.irfft2(
                (torch.fft.rfft2(x.to(dtype), s=shape) *
                 grad_spectrum.conj()).sum(0),
                s=shape)
            if needs[1] or needs[2]:
                c_h = _circular(k_h[:, 0, :, 0], n_h, 1, height)
                c_w = _circular(k_w[:, 0, 0, :], n_w, 1, width)
                if needs[1]:
                    grad_h = _taps(
                        torch.einsum('chw,cw->ch', cross, c_w), k_h.shape[-2],
                        1, height)
                    grad_h = grad_h[:, None, :, None]
                if needs[2]:
                    grad_w = _taps(
                        torch.einsum('chw,ch->cw', cross, c_h), k_w.shape[-1],
                        1, width)
                    grad_w = grad_w[:, None, None, :]
            if local is not None and needs[3]:
                grad_local = _taps(
                    _taps(cross, local.shape[-2], 1, height), local.shape[-1],
                    2, width)[:, None]
        return grad_x, grad_h, grad_w, grad_local


def _taps(circular: Tensor, taps: int, dim: int, size: int) -> Tensor:
    """Inverse of :func:`_circular`: the values at offsets -taps//2 ..
    taps//2 (zeros for taps that cannot meet a map of ``size``)."""
    centre, reach = taps // 2, _reach(taps, size)
    values = circular.roll(reach, dims=dim).narrow(dim, 0, 2 * reach + 1)
    pad = [0, 0] * (values.dim() - dim - 1)
    return F.pad(values, pad + [centre - reach, taps - centre - reach - 1])


# -- matmul path (exportable) -------------------------------------------------


def _resize_taps(kernel: Tensor, length) -> Tensor:
    """Linear interpolation with align_corners=True of (C, K) to (C, length)
    by index arithmetic, ``length`` possibly symbolic (a traced size)."""
    taps = kernel.shape[1]
    if taps == 1:
        return kernel.expand(-1, length)
    # positions in float32 at least: in bf16 the taps of a 111-tap kernel
    # would land a whole tap off
    dtype = torch.float64 if kernel.dtype == torch.float64 else torch.float32
    low, weight = _lerp_positions(taps, length, kernel.device, dtype)
    weight = weight.to(kernel.dtype)
    return kernel[:, low] * (1 - weight) + kernel[:, low + 1] * weight


def _lerp_positions(taps: int, length, device: torch.device,
                    dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """For each of ``length`` (possibly symbolic) output taps of a linear
    resize of ``taps`` > 1 taps with align_corners=True, the lower input
    tap i and the weight f of tap i + 1, positions computed in ``dtype``."""
    steps = torch.arange(length, device=device, dtype=dtype)
    # like F.interpolate: position j * (K - 1) / (length - 1), 0 for length 1
    scale = (taps - 1) / torch.clamp(
        torch.full_like(steps[:1], 1.) * (length - 1), min=1.)
    position = steps * scale
    low = torch.clamp(position.floor().long(), max=taps - 2)
    return low, position - low.to(dtype)


def _toeplitz(window: Tensor,
              size,
              offsets: Optional[Tensor] = None) -> Tensor:
    """(C, size, size) matrices T[c, i, t] = window[c, size - 1 + t - i] from
    (C, 2 * size) windows of taps (the last one never read); ``size`` may be
    symbolic, ``offsets`` its :func:`_toeplitz_offsets` if already made.

    Gathered as whole rows of channels (taps first), then transposed: in ONNX
    Runtime, gathering single elements, or building the matrices from
    repeated windows by slicing, costs up to twice as much.
    """
    if offsets is None:
        offsets = _toeplitz_offsets(size, window.device)
    return window.t()[offsets].permute(2, 0, 1)


def _toeplitz_offsets(size, device: torch.device) -> Tensor:
    """The (size, size) gather index of :func:`_toeplitz`."""
    index = torch.arange(size, device=device)
    return index[None, :] - index[:, None] + (size - 1)


def _window(kernel: Tensor, size, centre: int) -> Tensor:
    """The 2 * size taps kernel[c, m - (size - 1) + centre] (zeros beyond the
    kernel) that a map of ``size`` meets, for :func:`_toeplitz`."""
    return F.pad(kernel, (size - 1, size + 1))[:, centre:centre + 2 * size]


def _traced_matmul(x: Tensor, k_h: Tensor, k_w: Tensor, mode: str,
                   local_kernel: Optional[Tensor]) -> Tensor:
    """The matmul path as exporters record it (sizes may be symbolic)."""
    height = traced_size('height', lambda: x.shape[-2])
    width = traced_size('width', lambda: x.shape[-1])
    k_h, k_w = k_h[:, 0, :, 0], k_w[:, 0, 0, :]
    # X @ T_w^T, and T_w^T is the Toeplitz matrix of the reversed kernel
    # (reversed after resizing: at one tap, resizing keeps the first)
    if mode == 'interpolate':
        # 2 * size - 1 taps centred on size - 1: the window is the kernel and
        # a zero (constant pads: fewer nodes in the graph)
        taps_h = traced_size('taps_h', lambda: 2 * height - 1)
        taps_w = traced_size('taps_w', lambda: 2 * width - 1)
        vertical = F.pad(_resize_1d(k_h, taps_h), (0, 1))
        across = F.pad(_resize_1d(k_w, taps_w).flip(1), (0, 1))
    else:
        taps_h, taps_w = k_h.shape[1], k_w.shape[1]
        vertical = _window(k_h, height, taps_h // 2)
        across = _window(k_w.flip(1), width, taps_w - 1 - taps_w // 2)
    offsets_h = traced_size('offsets_h',
                            lambda: _toeplitz_offsets(height, x.device))
    offsets_w = traced_size('offsets_w',
                            lambda: _toeplitz_offsets(width, x.device))
    vertical = _toeplitz(vertical, height, offsets_h)  # (C, H_out, H_in)
    across = _toeplitz(across, width, offsets_w)  # (C, W_in, W_out)
    out = torch.matmul(vertical.to(x.dtype), x)
    out = torch.matmul(out, across.to(x.dtype))
    if local_kernel is not None:
        out = out + _local(x, local_kernel)
    return out


def _toeplitz_view(kernel: Tensor, size: int) -> Tensor:
    """(C, size, size) matrices T[c, i, t] = kernel[c, t - i + K // 2] for a
    centred (C, K) kernel, zero where no tap exists.

    After cropping or zero-padding the kernel to 2 * size - 1 taps (g),
    T[c, i, t] = g[c, (size - 1 - i) + t]: the sliding windows of g, last
    window first (reversed by a copy: strides cannot run backwards).
    """
    centre, reach = kernel.shape[1] // 2, size - 1
    if centre >= reach:
        kernel = kernel[:, centre - reach:centre + reach + 1]
    else:
        kernel = F.pad(kernel, (reach - centre, reach - centre))
    return kernel.unfold(1, size, 1).flip(1)


def _by_plane(matrices: Tensor, planes: Tensor) -> Tensor:
    """``matrices[c] @ planes[c, n]`` for (C, M, K) matrices and (C, N, K, W)
    planes: (C, N, M, W)."""
    if planes.shape[1] == 1:
        return torch.bmm(matrices, planes[:, 0])[:, None]
    return torch.matmul(matrices[:, None], planes)


def _toeplitz_product(planes: Tensor, k_h: Tensor,
                      k_w: Tensor) -> Tuple[Tensor, Tensor]:
    """``T_h @ X @ T_w^T`` on each channel-major plane (C, N, H, W), with the
    horizontal pass ``X @ T_w^T`` (the backward pass needs it)."""
    channels, batch, height, width = planes.shape
    vertical = _toeplitz_view(k_h, height)
    horizontal = _toeplitz_view(k_w, width)
    # seen as (C, N * H, W) the horizontal pass is one bmm
    across = torch.bmm(
        planes.view(channels, batch * height, width),
        horizontal.transpose(1, 2))
    across = across.view(channels, batch, height, width)
    return _by_plane(vertical, across), across


class _ToeplitzProduct(torch.autograd.Function):
    """:func:`_toeplitz_product` keeping the kernels for the backward pass
    instead of the Toeplitz matrices, which autograd would keep and which
    are as large as the map itself at detection sizes (C(H^2 + W^2) against
    CNHW elements); they are built again from the kernels, two small copies.
    """

    @staticmethod
    def forward(ctx, planes, k_h, k_w):
        out, across = _toeplitz_product(planes, k_h, k_w)
        ctx.save_for_backward(planes, across, k_h, k_w)
        return out

    @staticmethod
    def backward(ctx, grad):
        planes, across, k_h, k_w = ctx.saved_tensors
        needs_planes, needs_h, needs_w = ctx.needs_input_grad
        channels, batch, height, width = planes.shape
        grad = grad.contiguous()
        with torch.enable_grad():
            k_h = k_h.detach().requires_grad_(needs_h)
            k_w = k_w.detach().requires_grad_(needs_w)
            vertical = _toeplitz_view(k_h, height)
            horizontal = _toeplitz_view(k_w, width)
        # the matrices' gradients; the kernels' (each tap's sum over its
        # diagonal) come from the backward of the views that built them
        matrices, kernels, matrix_grads = [], [], []
        if needs_h:  # sum over the batch of G_n @ A_n^T
            matrices.append(vertical)
            kernels.append(k_h)
            matrix_grads.append(
                sum(
                    torch.bmm(grad[:, n], across[:, n].transpose(1, 2))
                    for n in range(batch)))
        grad_planes = None
        if needs_planes or needs_w:
            grad_across = _by_plane(vertical.detach().transpose(1, 2), grad)
            grad_across = grad_across.view(channels, batch * height, width)
            if needs_w:
                matrices.append(horizontal)
                kernels.append(k_w)
                matrix_grads.append(
                    torch.bmm(
                        grad_across.transpose(1, 2),
                        planes.view(channels, batch * height, width)))
            if needs_planes:
                grad_planes = torch.bmm(grad_across, horizontal.detach())
                grad_planes = grad_planes.view(planes.shape)
        kernel_grads = (
            torch.autograd.grad(matrices, kernels, matrix_grads)
            if matrices else ())
        return (grad_planes, kernel_grads[0] if needs_h else None,
                kernel_grads[-1] if needs_w else None)


def _matmul(x: Tensor, k_h: Tensor, k_w: Tensor,
            local_kernel: Optional[Tensor]) -> Tensor:
    # under autocast in its type, as autocast would run the products
    dtype = autocast_dtype(x)
    k_h = k_h[:, 0, :, 0].to(dtype)
    k_w = k_w[:, 0, 0, :].to(dtype)
    # channel-major planes (C, N, H, W) (a copy unless x is laid out so)
    planes = x.transpose(0, 1).to(dtype).contiguous()
    if is_compiling() or torch.jit.is_tracing():
        out, _ = _toeplitz_product(planes, k_h, k_w)  # plain ops for them
    else:
        with torch.autocast(x.device.type, enabled=False):
            out = _ToeplitzProduct.apply(planes, k_h, k_w)
    out = out.transpose(0, 1)  # NCHW, channel-major memory
    if local_kernel is not None:
        local = _local(x, local_kernel)
        # autograd forbids writing into a view of a custom function's output
        out = out + local if out.requires_grad else out.add_(local)
    return out


def choose_impl(x_shape,
                taps_h: int,
                taps_w: int,
                device_type: str,
                training: bool = False) -> str:
    """``'direct'``, ``'matmul'`` or ``'fft'`` for a shape on a device type.

    Deterministic: taps per output element and the number of elements
    against the rules of the device type and pass (:data:`FAST_PATHS`);
    ``training`` means gradients are needed.
    """
    device_type = device_type if (device_type, 'forward') in \
        FAST_PATHS else 'cpu'
    rules = FAST_PATHS[(device_type, 'training' if training else 'forward')]
    batch, channels, height, width = x_shape
    taps = min(taps_h, 2 * height - 1) + min(taps_w, 2 * width - 1)
    elements = batch * channels * height * width
    for impl, min_taps, min_elements in rules:
        if taps >= min_taps and elements >= min_elements:
            return impl
    return 'direct'


def oversized_conv(x: Tensor,
                   k_h: Tensor,
                   k_w: Tensor,
                   mode: str = 'interpolate',
                   impl: str = 'auto',
                   local_kernel: Optional[Tensor] = None) -> Tensor:
    """Apply ParCNetV2's oversized depthwise convolution.

    Args:
        x (Tensor): input of shape (N, C, H, W), any memory format.
        k_h (Tensor): stored vertical kernel, shape (C, 1, K_h, 1).
        k_w (Tensor): stored horizontal kernel, shape (C, 1, 1, K_w).
        mode (str): ``'interpolate'`` or ``'fixed'`` (see the module
            docstring). Defaults to ``'interpolate'``.
        impl (str): ``'direct'``, ``'fft'``, ``'matmul'`` or ``'auto'``
            (:func:`choose_impl`; ``'matmul'`` while exporting). Defaults to
            ``'auto'``.
        local_kernel (Tensor, optional): a centred depthwise kernel (C, 1,
            k, k) whose "same" correlation with ``x`` is added to the result
            (ParCNetV2's 7x7 branch). Defaults to None.

    Returns:
        Tensor: output of shape (N, C, H, W). Its memory layout depends on
        the path (channel-major for ``'matmul'``).
    """
    if mode not in KERNEL_MODES:
        raise ValueError(f'unknown oversized kernel mode {mode!r}; '
                         f'expected one of {KERNEL_MODES}')
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'unknown oversized convolution implementation '
                         f'{impl!r}; expected one of {IMPLEMENTATIONS}')
    # exporting first: the only formulation whose graph resizes the kernels
    # for any input, whatever the fast-path switch says
    if impl in ('matmul', 'auto') and is_exporting():
        return _traced_matmul(x, k_h, k_w, mode, local_kernel)
    if impl == 'auto' and not fast_paths_enabled():
        impl = 'direct'
    height, width = x.shape[-2:]
    if mode == 'interpolate':
        k_h = resize_kernel(k_h, 2 * height - 1, vertical=True)
        k_w = resize_kernel(k_w, 2 * width - 1, vertical=False)
    if impl == 'auto':
        training = torch.is_grad_enabled() and (x.requires_grad
                                                or k_h.requires_grad
                                                or k_w.requires_grad)
        impl = choose_impl(x.shape, k_h.shape[-2], k_w.shape[-1],
                           x.device.type, training)
    if impl == 'fft':
        if is_compiling() or torch.jit.is_tracing():  # plain ops for them
            with torch.autocast(x.device.type, enabled=False):
                return _fft_correlation(x, k_h, k_w, local_kernel).to(x.dtype)
        return _FFTCorrelation.apply(x, k_h, k_w, local_kernel)
    if impl == 'matmul':
        return _matmul(x, k_h, k_w, local_kernel)
    return _direct(x, k_h, k_w, local_kernel)
