"""The end of the spatial unit, ``pwconv2(g * (oversized + local))``, with
its elementwise work as one kernel forward and one backward.

The spatial unit sums its two depthwise convolutions of one map, gates the
sum and projects it (paper Eq. 3). Unfused, the forward is a sum and a
product (two passes, and an intermediate as large as the map), and the
backward the product's two gradients and the product again for the
weight's gradient (three passes; :func:`..gated_linear.gated_linear`). Here
each way is one pass:

- forward, the kernel reads the two summands and the gate and writes the
  product (which the GEMM reads) and the sum (kept for the backward pass in
  place of the product, as :func:`..gated_linear.gated_linear` keeps its
  factors);
- backward, it reads the product's gradient, the sum and the gate and
  writes the gradients of the sum and the gate and the product again.

The inputs may come in different layouts (the Toeplitz path's channel-major
planes, a depthwise convolution's NCHW): the kernels read any layout in
which each channel's plane is contiguous, and write channel-major planes,
which the projection's GEMM reads in place as a transposed operand and
which the Toeplitz backward wants. Elementwise work is in float32, rounded
where the unfused operators round (the sum, then the product), so for
float16, bfloat16 and float32 the forward's product is theirs bit for bit
(the registry offers the kernels in those types only); the projections are
cuBLAS GEMMs in the computation's type (under autocast, the autocast type).

The two operators have no autograd formula of their own: gradients come
from :func:`gated_sum_linear`'s autograd function, which calls both.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import context
from . import INTERPRETING

# positions of one plane per program
BLOCK = 1024


def _as_planes(maps: Tensor) -> Tensor:
    """An NCHW view of new channel-major memory (C, N, H, W) shaped like
    ``maps``."""
    batch, channels, height, width = maps.shape
    return maps.new_empty(channels, batch, height, width).transpose(0, 1)


def _planes_copy(maps: Tensor) -> Tensor:
    planes = _as_planes(maps)
    planes.copy_(maps)
    return planes


def gated_sum_reference(first: Tensor, second: Optional[Tensor],
                        gate: Tensor) -> Tuple[Tensor, Tensor]:
    """``(gate * mixed, mixed)`` for ``mixed = first + second`` (``first``
    without a second), in PyTorch operators; channel-major planes."""
    mixed = first if second is None else first + second
    return _planes_copy(gate * mixed), _planes_copy(mixed)


def gated_sum_backward_reference(
        grad: Tensor, mixed: Tensor,
        gate: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The gradients of the sum and the gate for the product's gradient,
    and the product again, written out; channel-major planes."""
    return (_planes_copy(grad * gate), _planes_copy(grad * mixed),
            _planes_copy(gate * mixed))


def _readable(maps: Tensor) -> Tensor:
    """``maps`` if each (sample, channel) plane is contiguous, else a
    contiguous copy."""
    _, _, height, width = maps.shape
    rows_ok = width == 1 or maps.stride(3) == 1
    columns_ok = height == 1 or maps.stride(2) == width
    return maps if rows_ok and columns_ok else maps.contiguous()


@triton.jit
def _plane_block(batch, positions, BLOCK: tl.constexpr):
    """This program's plane of the channel-major output (one per row of the
    grid: channel-major, so the sample varies fastest), and its block of
    positions in the plane with their mask."""
    plane = tl.program_id(0).to(tl.int64)
    channel = plane // batch
    sample = plane - channel * batch
    offsets = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return plane, sample, channel, offsets, offsets < positions


@triton.jit
def _load(maps, sample, channel, sample_stride, channel_stride, offsets, mask):
    """A block of one (sample, channel) plane of ``maps``, in float32."""
    return tl.load(
        maps + sample * sample_stride + channel * channel_stride + offsets,
        mask=mask).to(tl.float32)


@triton.jit
def _forward_kernel(first, second, gate, product, mixed, batch, positions,
                    first_n, first_c, second_n, second_c, gate_n, gate_c,
                    HAS_SECOND: tl.constexpr, KEEP_SUM: tl.constexpr,
                    BLOCK: tl.constexpr):
    plane, sample, channel, offsets, mask = _plane_block(
        batch, positions, BLOCK)
    kind = product.dtype.element_ty
    value = _load(first, sample, channel, first_n, first_c, offsets, mask)
    if HAS_SECOND:
        value += _load(second, sample, channel, second_n, second_c, offsets,
                       mask)
        value = value.to(kind).to(tl.float32)  # the sum as stored
    gating = _load(gate, sample, channel, gate_n, gate_c, offsets, mask)
    out = plane * positions + offsets
    tl.store(product + out, (value * gating).to(kind), mask=mask)
    if KEEP_SUM:
        tl.store(mixed + out, value.to(kind), mask=mask)


@triton.jit
def _backward_kernel(grad, mixed, gate, grad_mixed, grad_gate, product, batch,
                     positions, grad_n, grad_c, mixed_n, mixed_c, gate_n,
                     gate_c, BLOCK: tl.constexpr):
    plane, sample, channel, offsets, mask = _plane_block(
        batch, positions, BLOCK)
    kind = product.dtype.element_ty
    upstream = _load(grad, sample, channel, grad_n, grad_c, offsets, mask)
    value = _load(mixed, sample, channel, mixed_n, mixed_c, offsets, mask)
    gating = _load(gate, sample, channel, gate_n, gate_c, offsets, mask)
    out = plane * positions + offsets
    tl.store(grad_mixed + out, (upstream * gating).to(kind), mask=mask)
    tl.store(grad_gate + out, (upstream * value).to(kind), mask=mask)
    tl.store(product + out, (value * gating).to(kind), mask=mask)


def _runs_triton(tensor: Tensor) -> bool:
    return tensor.is_cuda or INTERPRETING


def _grid(maps: Tensor):
    batch, channels, height, width = maps.shape
    return (batch * channels, triton.cdiv(height * width, BLOCK))


def _sample_and_channel_strides(maps: Tensor) -> Tuple[int, int]:
    return maps.stride(0), maps.stride(1)


@torch.library.triton_op('mmparcnet::gated_sum', mutates_args=())
def gated_sum(first: Tensor, second: Optional[Tensor], gate: Tensor,
              keep_sum: bool) -> Tuple[Tensor, Tensor]:
    """``(gate * mixed, mixed)`` for ``mixed = first + second`` (``first``
    alone without a second) of (N, C, H, W) maps of one type, as NCHW views
    of channel-major planes; ``mixed`` is empty unless ``keep_sum``."""
    if not _runs_triton(first):
        product, mixed = gated_sum_reference(first, second, gate)
        return product, mixed if keep_sum else mixed.new_empty(0)
    first, gate = _readable(first), _readable(gate)
    second = None if second is None else _readable(second)
    product = _as_planes(first)
    mixed = _as_planes(first) if keep_sum else first.new_empty(0)
    if first.numel():
        torch.library.wrap_triton(_forward_kernel)[_grid(first)](
            first,
            first if second is None else second,  # not read without one
            gate,
            product,
            mixed,
            first.shape[0],
            first.shape[2] * first.shape[3],
            *_sample_and_channel_strides(first),
            *_sample_and_channel_strides(first if second is None else second),
            *_sample_and_channel_strides(gate),
            HAS_SECOND=second is not None,
            KEEP_SUM=keep_sum,
            BLOCK=BLOCK)
    return product, mixed


@torch.library.triton_op('mmparcnet::gated_sum_backward', mutates_args=())
def gated_sum_backward(grad: Tensor, mixed: Tensor,
                       gate: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """For the gradient of :func:`gated_sum`'s product: the gradients of
    the sum and of the gate, and the product again, as NCHW views of
    channel-major planes."""
    if not _runs_triton(grad):
        return gated_sum_backward_reference(grad, mixed, gate)
    grad, mixed, gate = _readable(grad), _readable(mixed), _readable(gate)
    grad_mixed, grad_gate, product = (_as_planes(grad) for _ in range(3))
    if grad.numel():
        torch.library.wrap_triton(_backward_kernel)[_grid(grad)](
            grad,
            mixed,
            gate,
            grad_mixed,
            grad_gate,
            product,
            grad.shape[0],
            grad.shape[2] * grad.shape[3],
            *_sample_and_channel_strides(grad),
            *_sample_and_channel_strides(mixed),
            *_sample_and_channel_strides(gate),
            BLOCK=BLOCK)
    return grad_mixed, grad_gate, product


def _rows(planes: Tensor) -> Tensor:
    """An NCHW view of channel-major planes as (C, N H W), no copy."""
    return planes.transpose(0, 1).reshape(planes.shape[1], -1)


class _GatedSumLinear(torch.autograd.Function):
    """``linear(gate * (first + second), weight)`` from NCHW maps to (N H W,
    C_out) rows, keeping the sum and the gate for the backward pass."""

    @staticmethod
    def forward(ctx, first, second, gate, weight):
        ctx.has_second = second is not None
        product, mixed = gated_sum(first, second, gate,
                                   any(ctx.needs_input_grad))
        ctx.save_for_backward(mixed, gate, weight)
        # (C, M) planes as the transposed operand of (M, C) @ (C, C_out)
        return torch.mm(_rows(product).t(), weight.t())

    @staticmethod
    def backward(ctx, grad):
        mixed, gate, weight = ctx.saved_tensors
        needs_first, needs_second, needs_gate, needs_weight = \
            ctx.needs_input_grad
        batch, channels, height, width = mixed.shape
        grad_mixed = grad_gate = None
        if needs_first or needs_second or needs_gate:
            # W^T @ G^T: the product's gradient as channel-major planes
            grad_planes = torch.mm(weight.t(),
                                   grad.t()).view(channels, batch, height,
                                                  width).transpose(0, 1)
            grad_mixed, grad_gate, product = gated_sum_backward(
                grad_planes, mixed, gate)
        else:  # the weight's gradient alone: the product again, no GEMM
            product, _ = gated_sum(mixed, None, gate, False)
        grad_weight = (
            torch.mm(grad.t(),
                     _rows(product).t()) if needs_weight else None)
        return (grad_mixed if needs_first else None,
                grad_mixed if needs_second and ctx.has_second else None,
                grad_gate if needs_gate else None, grad_weight)


def gated_sum_linear(first: Tensor,
                     second: Optional[Tensor],
                     gate: Tensor,
                     weight: Tensor,
                     dtype: Optional[torch.dtype] = None) -> Tensor:
    """``F.linear(rows(gate * (first + second)), weight)``: the spatial
    unit's gated sum of its two depthwise convolutions and its last 1x1
    convolution, from (N, C, H, W) maps (any layout) to (N H W, C_out)
    rows.

    Args:
        first (Tensor): (N, C, H, W), the oversized convolution's output.
        second (Tensor, optional): the same shape, the local convolution's
            output; None: ``first`` alone is gated.
        gate (Tensor): the same shape, the gate.
        weight (Tensor): (C_out, C) the projection's weight.
        dtype (torch.dtype, optional): the computation's type; None: the
            type autocast would run the projection in. Defaults to None.

    Returns:
        Tensor: (N H W, C_out) rows in ``dtype``.
    """
    shapes = {tuple(t.shape) for t in (first, second, gate) if t is not None}
    if len(shapes) != 1 or first.dim() != 4:
        raise ValueError(f'the summands and the gate must be (N, C, H, W) '
                         f'maps of one shape, got {sorted(shapes)}')
    if weight.dim() != 2 or weight.shape[1] != first.shape[1]:
        raise ValueError(f'the weight {tuple(weight.shape)} must be (C_out, '
                         f'{first.shape[1]})')
    dtype = dtype or context.autocast_dtype(first)
    first, gate, weight = (t.to(dtype) for t in (first, gate, weight))
    second = None if second is None else second.to(dtype)
    with torch.autocast(first.device.type, enabled=False):
        return _GatedSumLinear.apply(first, second, gate, weight)
