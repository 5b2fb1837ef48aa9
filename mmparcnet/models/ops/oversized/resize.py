"""Linear resizing of the oversized kernels, in one place.

In interpolate mode a stored K-tap kernel is resized to the 2H - 1 (or
2W - 1) taps a map meets, by linear interpolation with ``align_corners=True``
as the reference code's ``F.interpolate(..., mode='bilinear',
align_corners=True)``: the two end taps stay where they are. One
computation, in the form each need requires:

- ``F.interpolate`` on the CPU and for the tracing (legacy) ONNX exporter,
  which records it as one Resize node;
- a product with the interpolation matrix on other devices: CUDA's
  ``upsample_linear1d`` backward has no deterministic implementation
  (training with ``torch.use_deterministic_algorithms(True)``, as mmengine's
  ``randomness=dict(deterministic=True)`` sets, stops at it), and its
  threads loop over the channels, slowly for a few hundred kernels;
- index arithmetic under Dynamo (``torch.compile``, ``torch.export``, the
  dynamo ONNX exporter): before PyTorch 2.3 it cannot trace
  ``F.interpolate`` to a symbolic size, and that decomposition divides by
  length - 1, zero on one-pixel maps.
"""
import contextlib
import functools
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import context


def resize_kernel(weight: Tensor, length: int, vertical: bool) -> Tensor:
    """Resize a 1-D oversized kernel to ``length`` taps.

    Args:
        weight (Tensor): a depthwise kernel of shape (C, 1, K, 1) (vertical)
            or (C, 1, 1, K) (horizontal).
        length (int): the number of taps wanted.
        vertical (bool): whether ``weight`` is the vertical kernel.

    Returns:
        Tensor: the kernel in the same layout with ``length`` taps, linearly
        interpolated with ``align_corners=True``. Like the reference
        ``F.interpolate`` call, a length of 1 keeps the first tap.
    """
    taps = weight.shape[-2] if vertical else weight.shape[-1]
    if context.tracer() == context.DYNAMO:
        # also at the stored length (where it is exact: weights 1 and 0), so
        # that no graph depends on whether a map meets it; and in the
        # kernel's own layout: inductor (torch 2.14.1) cannot order the
        # strides of a reshaped view of symbolic length that autograd keeps
        return resize_by_index(weight, length, dim=-2 if vertical else -1)
    if taps == length:
        return weight
    channels = weight.shape[0]
    resized = resize_1d(weight.reshape(channels, taps), length)
    return resized.reshape(weight.shape[:2] +
                           ((length, 1) if vertical else (1, length)))


def resize_1d(kernel: Tensor, length) -> Tensor:
    """(C, K) kernels to (C, length) taps, ``length`` possibly symbolic, in
    the form the running tracer and the device need (module docstring)."""
    tracer = context.tracer()
    if tracer == context.DYNAMO:
        return resize_by_index(kernel, length)
    if kernel.device.type == 'cpu' or tracer == context.JIT:
        resized = F.interpolate(
            kernel[:, None], size=length, mode='linear', align_corners=True)
        return resized[:, 0]
    return resize_by_matrix(kernel, length)


def resize_by_matrix(kernel: Tensor, length: int) -> Tensor:
    """(C, K) kernels to (C, length) taps as one matrix product, in the
    kernels' type also under autocast (with TF32 matrix products switched
    on, the resize is TF32 too, as every other product of the network)."""
    build = (
        _cached_interpolation_matrix
        if _cacheable(kernel, length) else _interpolation_matrix)
    matrix = build(kernel.shape[1], length, kernel.device, kernel.dtype)
    keep_type = (
        torch.autocast(kernel.device.type, enabled=False)
        if context.autocast_dtype(kernel) != kernel.dtype else
        contextlib.nullcontext())
    with keep_type:
        return kernel @ matrix


def _cacheable(kernel: Tensor, length) -> bool:
    """Whether the matrix for ``kernel`` may be kept: a real tensor (not a
    fake or other subclass a tracer passes), a concrete length, and not
    while a CUDA graph is being captured (its memory would belong to the
    graph)."""
    if type(kernel) is not torch.Tensor or not isinstance(length, int):
        return False
    return not context.capturing_cuda_graph(kernel)


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


def resize_by_index(kernel: Tensor, length, dim: int = 1) -> Tensor:
    """Kernels of K taps along ``dim`` ((C, K) by default) to ``length``
    taps by index arithmetic, ``length`` possibly symbolic (a traced
    size)."""
    taps = kernel.shape[dim]
    if taps == 1:  # the one tap everywhere (a copy, not a view)
        return kernel.index_select(
            dim, torch.zeros(length, dtype=torch.long, device=kernel.device))
    # positions in float32 at least: in bf16 the taps of a 111-tap kernel
    # would land a whole tap off
    dtype = torch.float64 if kernel.dtype == torch.float64 else torch.float32
    low, weight = _lerp_positions(taps, length, kernel.device, dtype)
    # the weights along ``dim``, broadcast over the dimensions after it
    weight = weight.to(kernel.dtype).reshape(
        (-1, ) + (1, ) * (-dim - 1 if dim < 0 else kernel.dim() - dim - 1))
    return (kernel.index_select(dim, low) * (1 - weight) +
            kernel.index_select(dim, low + 1) * weight)


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
