"""A residual connection and the channel norm that follows it, as one kernel
forward and one backward.

Between a block's two gate units, and between one block and the next, the
residual stream is updated and normed at once::

    stream = stream * scale + branch     # scale: a ResScale, or none
    normed = ChannelNorm(stream)

Unfused that is a product, a sum and a layer norm (and under autocast a cast
of the norm's float32 output before the next projection): three or four
passes over the stream forward, more backward, where this takes one each
way. ``normed`` comes out in the type the next projection computes in
(``norm_dtype``; under autocast the autocast type, which is what autocast
would cast the float32 norm to), ``stream`` in the type the sum promotes to.

The channel norm is a layer norm without bias whose scale is
``weight / sqrt(C)`` and whose epsilon is ``eps**2 / C``
(:class:`~...layers.norm.ChannelNorm`). Statistics and sums are in float32
whatever the storage type. The backward keeps what the unfused form keeps:
the new stream with its rows' mean and inverse deviation, and the old
stream where a scale needs it.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from . import INTERPRETING

# rows per program of the backward, which also sums the parameters'
# gradients over its rows (one partial sum per program)
BACKWARD_ROWS = 64


def _wide(tensor: Tensor) -> Tensor:
    """Half types in float32, as the kernels compute; others as they are."""
    return tensor.float() if tensor.element_size() < 4 else tensor


def residual_norm_reference(stream: Tensor, branch: Tensor,
                            scale: Optional[Tensor], weight: Tensor,
                            eps: float,
                            norm_dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``stream * scale + branch`` (no scale: ``stream + branch``) and its
    channel norm, in PyTorch operators."""
    updated = (stream if scale is None else stream * scale) + branch
    channels = weight.shape[0]
    normed = F.layer_norm(
        _wide(updated), (channels, ),
        _wide(weight) * channels**-0.5, None, eps * eps / channels)
    return updated, normed.to(norm_dtype)


@triton.jit
def _forward_kernel(stream, branch, scale, weight, updated, normed, mean_out,
                    rstd_out, channels, inv_sqrt_channels, epsilon,
                    HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    columns = tl.arange(0, BLOCK)
    mask = columns < channels
    offsets = row * channels + columns
    value = tl.load(stream + offsets, mask=mask, other=0.).to(tl.float32)
    if HAS_SCALE:
        value *= tl.load(scale + columns, mask=mask, other=0.).to(tl.float32)
    value += tl.load(branch + offsets, mask=mask, other=0.).to(tl.float32)
    tl.store(updated + offsets, value.to(updated.dtype.element_ty), mask=mask)
    # the stream as stored, so that the statistics are those of what the
    # backward pass reads back
    value = value.to(updated.dtype.element_ty).to(tl.float32)
    mean = tl.sum(value, axis=0) / channels
    centred = tl.where(mask, value - mean, 0.)
    variance = tl.sum(centred * centred, axis=0) / channels
    rstd = 1. / tl.sqrt(variance + epsilon)
    gain = tl.load(weight + columns, mask=mask, other=0.).to(tl.float32)
    out = centred * rstd * (gain * inv_sqrt_channels)
    tl.store(normed + offsets, out.to(normed.dtype.element_ty), mask=mask)
    tl.store(mean_out + row, mean)
    tl.store(rstd_out + row, rstd)


@triton.jit
def _backward_kernel(grad_updated, grad_normed, updated, stream, scale, weight,
                     mean_in, rstd_in, grad_stream, grad_branch,
                     weight_partial, scale_partial, rows, channels,
                     inv_sqrt_channels, HAS_SCALE: tl.constexpr,
                     ROWS: tl.constexpr, BLOCK: tl.constexpr):
    program = tl.program_id(0)
    columns = tl.arange(0, BLOCK)
    mask = columns < channels
    gain = tl.load(
        weight + columns, mask=mask, other=0.).to(tl.float32) * \
        inv_sqrt_channels
    if HAS_SCALE:
        multiplier = tl.load(
            scale + columns, mask=mask, other=0.).to(tl.float32)
    weight_sum = tl.zeros((BLOCK, ), dtype=tl.float32)
    scale_sum = tl.zeros((BLOCK, ), dtype=tl.float32)
    first = program.to(tl.int64) * ROWS
    for step in range(0, ROWS):
        # masks as vectors and rows past the end read as the last row
        # (where nothing is stored): Triton 3.9's interpreter refuses a
        # mask of a vector and a scalar combined
        row = first + step
        inside = mask & (columns.to(tl.int64) * 0 + row < rows)
        row = tl.minimum(row, rows - 1)
        offsets = row * channels + columns
        value = tl.load(updated + offsets, mask=inside, other=0.)
        mean = tl.load(mean_in + row)
        rstd = tl.load(rstd_in + row)
        normal = tl.where(inside, (value.to(tl.float32) - mean) * rstd, 0.)
        upstream = tl.load(
            grad_normed + offsets, mask=inside, other=0.).to(tl.float32)
        weight_sum += upstream * normal
        # d normed / d stream, the layer norm's backward
        grad_normal = upstream * gain
        total = tl.load(
            grad_updated + offsets, mask=inside, other=0.).to(tl.float32)
        total += rstd * (
            grad_normal - tl.sum(grad_normal, axis=0) / channels - normal *
            (tl.sum(grad_normal * normal, axis=0) / channels))
        tl.store(
            grad_branch + offsets,
            total.to(grad_branch.dtype.element_ty),
            mask=inside)
        if HAS_SCALE:
            previous = tl.load(
                stream + offsets, mask=inside, other=0.).to(tl.float32)
            scale_sum += total * previous
            total *= multiplier
        tl.store(
            grad_stream + offsets,
            total.to(grad_stream.dtype.element_ty),
            mask=inside)
    tl.store(
        weight_partial + program * channels + columns, weight_sum, mask=mask)
    if HAS_SCALE:
        tl.store(
            scale_partial + program * channels + columns, scale_sum, mask=mask)


def _runs_triton(tensor: Tensor) -> bool:
    return tensor.is_cuda or INTERPRETING


def _block(channels: int) -> int:
    return triton.next_power_of_2(channels)


@torch.library.triton_op('mmparcnet::residual_norm_forward', mutates_args=())
def residual_norm_forward(
        stream: Tensor, branch: Tensor, scale: Optional[Tensor],
        weight: Tensor, eps: float,
        norm_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The updated stream, its norm, and the rows' mean and inverse
    deviation (float32, for the backward pass)."""
    channels = weight.shape[0]
    updated_dtype = torch.promote_types(stream.dtype, branch.dtype)
    if not _runs_triton(stream):
        updated, normed = residual_norm_reference(stream, branch, scale,
                                                  weight, eps, norm_dtype)
        wide = _wide(updated)
        mean = wide.mean(dim=-1)
        variance = (wide - mean[..., None]).square().mean(dim=-1)
        rstd = torch.rsqrt(variance + eps * eps / channels)
        return updated, normed, mean.reshape(-1), rstd.reshape(-1)
    stream, branch = stream.contiguous(), branch.contiguous()
    updated = torch.empty(
        stream.shape, dtype=updated_dtype, device=stream.device)
    normed = torch.empty(stream.shape, dtype=norm_dtype, device=stream.device)
    rows = stream.numel() // channels
    mean = stream.new_empty(rows, dtype=torch.float32)
    rstd = stream.new_empty(rows, dtype=torch.float32)
    if rows:
        torch.library.wrap_triton(_forward_kernel)[(rows, )](
            stream,
            branch,
            weight if scale is None else scale,  # not read without a scale
            weight,
            updated,
            normed,
            mean,
            rstd,
            channels,
            channels**-0.5,
            eps * eps / channels,
            HAS_SCALE=scale is not None,
            BLOCK=_block(channels))
    return updated, normed, mean, rstd


@torch.library.triton_op('mmparcnet::residual_norm_backward', mutates_args=())
def residual_norm_backward(
        grad_updated: Tensor, grad_normed: Tensor, updated: Tensor,
        stream: Optional[Tensor], scale: Optional[Tensor], weight: Tensor,
        mean: Tensor, rstd: Tensor,
        stream_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The gradients of the stream, the branch, the scale (empty without
    one) and the norm's weight."""
    channels = weight.shape[0]
    if not _runs_triton(updated):
        return _backward_reference(grad_updated, grad_normed, updated, stream,
                                   scale, weight, mean, rstd, stream_dtype)
    grad_updated, grad_normed = grad_updated.contiguous(), \
        grad_normed.contiguous()
    rows = updated.numel() // channels
    grad_branch = torch.empty_like(updated)
    grad_stream = torch.empty(
        updated.shape, dtype=stream_dtype, device=updated.device)
    programs = triton.cdiv(rows, BACKWARD_ROWS)
    weight_partial = updated.new_zeros((max(programs, 1), channels),
                                       dtype=torch.float32)
    scale_partial = torch.zeros_like(weight_partial) if scale is not None \
        else weight_partial
    if rows:
        torch.library.wrap_triton(_backward_kernel)[(programs, )](
            grad_updated,
            grad_normed,
            updated,
            updated if stream is None else stream.contiguous(),
            weight if scale is None else scale,
            weight,
            mean,
            rstd,
            grad_stream,
            grad_branch,
            weight_partial,
            scale_partial,
            rows,
            channels,
            channels**-0.5,
            HAS_SCALE=scale is not None,
            ROWS=BACKWARD_ROWS,
            BLOCK=_block(channels))
    grad_weight = (weight_partial.sum(0) * channels**-0.5).to(weight.dtype)
    grad_scale = (
        scale_partial.sum(0).to(scale.dtype)
        if scale is not None else weight.new_empty(0))
    return grad_stream, grad_branch, grad_scale, grad_weight


def _backward_reference(grad_updated, grad_normed, updated, stream, scale,
                        weight, mean, rstd, stream_dtype):
    """:func:`residual_norm_backward` written out in PyTorch operators."""
    channels = weight.shape[0]
    shape = updated.shape
    wide = _wide(updated).reshape(-1, channels)
    normal = (wide - mean[:, None]) * rstd[:, None]
    upstream = _wide(grad_normed).reshape(-1, channels)
    grad_weight = (upstream * normal).sum(0) * channels**-0.5
    grad_normal = upstream * (_wide(weight) * channels**-0.5)
    total = _wide(grad_updated).reshape(-1, channels) + rstd[:, None] * (
        grad_normal - grad_normal.mean(dim=1, keepdim=True) - normal *
        (grad_normal * normal).mean(dim=1, keepdim=True))
    grad_branch = total.to(updated.dtype).reshape(shape)
    if scale is None:
        grad_scale = weight.new_empty(0)
        grad_stream = total.clone()  # an operator's outputs may not alias
    else:
        grad_scale = (total * _wide(stream).reshape(-1, channels)).sum(0)
        grad_scale = grad_scale.to(scale.dtype)
        grad_stream = total * _wide(scale)
    return (grad_stream.to(stream_dtype).reshape(shape), grad_branch,
            grad_scale, grad_weight.to(weight.dtype))


def _setup_context(ctx, inputs, output):
    stream, branch, scale, weight, _, _ = inputs
    updated, _, mean, rstd = output
    ctx.stream_dtype, ctx.branch_dtype = stream.dtype, branch.dtype
    ctx.has_scale = scale is not None
    ctx.mark_non_differentiable(mean, rstd)
    # the old stream only where the scale's gradient needs it
    ctx.save_for_backward(updated, stream if ctx.has_scale else None, scale,
                          weight, mean, rstd)


def _backward(ctx, grad_updated, grad_normed, _grad_mean, _grad_rstd):
    updated, stream, scale, weight, mean, rstd = ctx.saved_tensors
    if grad_updated is None:
        grad_updated = torch.zeros_like(updated)
    if grad_normed is None:
        grad_normed = torch.zeros_like(updated)
    grad_stream, grad_branch, grad_scale, grad_weight = \
        residual_norm_backward(grad_updated, grad_normed, updated, stream,
                               scale, weight, mean, rstd, ctx.stream_dtype)
    return (grad_stream, grad_branch.to(ctx.branch_dtype),
            grad_scale if ctx.has_scale else None, grad_weight, None, None)


residual_norm_forward.register_autograd(
    _backward, setup_context=_setup_context)


def residual_norm(
        stream: Tensor,
        branch: Tensor,
        scale: Optional[Tensor],
        weight: Tensor,
        eps: float,
        norm_dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    """``stream * scale + branch`` (no scale: ``stream + branch``) and its
    channel norm with ``weight`` and ``eps``
    (:class:`~...layers.norm.ChannelNorm`), channels last.

    Args:
        stream (Tensor): the residual stream (..., C).
        branch (Tensor): what the branch adds, of the stream's shape.
        scale (Tensor, optional): (C, ) multiplier of the stream.
        weight (Tensor): (C, ) the channel norm's weight.
        eps (float): the channel norm's lower bound of the norm.
        norm_dtype (torch.dtype, optional): the norm's type; None: the
            updated stream's. Defaults to None.

    Returns:
        tuple[Tensor, Tensor]: the updated stream and its norm.
    """
    if branch.shape != stream.shape:
        raise ValueError(f'the branch {tuple(branch.shape)} and the stream '
                         f'{tuple(stream.shape)} must have one shape')
    if norm_dtype is None:
        norm_dtype = torch.promote_types(stream.dtype, branch.dtype)
    updated, normed, _, _ = residual_norm_forward(stream, branch, scale,
                                                  weight, eps, norm_dtype)
    return updated, normed
