"""The channel unit's gated GELU, ``a * GELU(b)`` for the two halves of
``fc1``'s output, as one kernel forward and one backward.

Unfused, the forward runs GELU and a product over the hidden rows, and the
backward a product's backward, GELU's backward and the concatenation of the
halves' gradients: five passes over (M, 2.5C) maps and five kernel launches
a block, where this takes one each way. It keeps ``fc1``'s output for the
backward pass, as :func:`..gated_linear.gated_linear` does, and computes in
float32 whatever the storage type.
"""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from . import INTERPRETING

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
BLOCK = 1024


def gelu_gate_reference(hidden: Tensor) -> Tensor:
    """``a * GELU(b)`` for ``a, b = hidden.chunk(2, dim=-1)``."""
    value, gate = hidden.chunk(2, dim=-1)
    return value * F.gelu(gate)


def gelu_gate_backward_reference(grad: Tensor, hidden: Tensor) -> Tensor:
    """The gradient of :func:`gelu_gate_reference` with respect to
    ``hidden``, written out: ``(g GELU(b), g a GELU'(b))``."""
    value, gate = hidden.chunk(2, dim=-1)
    cdf = 0.5 * (1 + torch.erf(gate * _SQRT_HALF))
    pdf = torch.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
    return torch.cat([grad * gate * cdf, grad * value * (cdf + gate * pdf)],
                     dim=-1)


@triton.jit
def _forward_kernel(hidden, out, half, total, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < total
    row = offsets // half
    column = offsets - row * half
    start = row * (2 * half) + column
    value = tl.load(hidden + start, mask=mask).to(tl.float32)
    gate = tl.load(hidden + start + half, mask=mask).to(tl.float32)
    gelu = 0.5 * gate * (1.0 + tl.erf(gate * _SQRT_HALF))
    tl.store(out + offsets, (value * gelu).to(out.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(grad, hidden, grad_hidden, half, total,
                     BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < total
    row = offsets // half
    column = offsets - row * half
    start = row * (2 * half) + column
    upstream = tl.load(grad + offsets, mask=mask).to(tl.float32)
    value = tl.load(hidden + start, mask=mask).to(tl.float32)
    gate = tl.load(hidden + start + half, mask=mask).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.erf(gate * _SQRT_HALF))
    pdf = tl.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
    grad_value = upstream * gate * cdf
    grad_gate = upstream * value * (cdf + gate * pdf)
    kind = grad_hidden.dtype.element_ty
    tl.store(grad_hidden + start, grad_value.to(kind), mask=mask)
    tl.store(grad_hidden + start + half, grad_gate.to(kind), mask=mask)


def _runs_triton(tensor: Tensor) -> bool:
    return tensor.is_cuda or INTERPRETING


def _grid(total: int):
    return (triton.cdiv(total, BLOCK), )


@torch.library.triton_op('mmparcnet::gelu_gate', mutates_args=())
def gelu_gate(hidden: Tensor) -> Tensor:
    """``a * GELU(b)`` (exact GELU) for ``a, b = hidden.chunk(2, dim=-1)``:
    (..., 2D) to (..., D)."""
    if not _runs_triton(hidden):
        return gelu_gate_reference(hidden)
    hidden = hidden.contiguous()
    half = hidden.shape[-1] // 2
    out = hidden.new_empty(hidden.shape[:-1] + (half, ))
    total = out.numel()
    if total:
        torch.library.wrap_triton(_forward_kernel)[_grid(total)](
            hidden, out, half, total, BLOCK=BLOCK)
    return out


@torch.library.triton_op('mmparcnet::gelu_gate_backward', mutates_args=())
def gelu_gate_backward(grad: Tensor, hidden: Tensor) -> Tensor:
    """The gradient of :func:`gelu_gate` with respect to ``hidden``."""
    if not _runs_triton(hidden):
        return gelu_gate_backward_reference(grad, hidden)
    grad, hidden = grad.contiguous(), hidden.contiguous()
    grad_hidden = torch.empty_like(hidden)
    total = grad.numel()
    if total:
        torch.library.wrap_triton(_backward_kernel)[_grid(total)](
            grad,
            hidden,
            grad_hidden,
            hidden.shape[-1] // 2,
            total,
            BLOCK=BLOCK)
    return grad_hidden


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _backward(ctx, grad):
    hidden, = ctx.saved_tensors
    return gelu_gate_backward(grad, hidden)


gelu_gate.register_autograd(_backward, setup_context=_setup_context)
