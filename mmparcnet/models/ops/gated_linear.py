"""The gated projection both of ParCNetV2's gate units end in, for training.

Each gate unit ends in ``linear(value * act(gate), weight, bias)``: the
spatial unit with ``act`` the identity (value: the oversized convolution's
output), the channel unit with ``act`` = GELU (value and gate: the halves of
``fc1``'s output, 2.5C wide each). Autograd on those plain ops keeps
``act(gate)`` and the product for the backward pass, each as large as
``value``, on top of ``value`` and ``gate``, which the layers before keep
anyway. :func:`gated_linear` keeps only ``value``, ``gate`` and the weight,
and computes the product again in the backward pass: of the maps as large
as the unit's input that the channel unit keeps, 6 instead of 11, the
spatial unit one fewer. It goes ``block_rows`` rows at a time, forward and
backward, so that a block's intermediates stay in cache; on the CPU that
pays for the extra elementwise passes (docs/speed.md).
:func:`gated_linear_halves` takes value and gate as the two halves of one
tensor, as the channel unit's ``fc1`` writes them, and writes their
gradients into one tensor (autograd would concatenate two).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import context
from .compat import gelu_backward_into

ACTIVATIONS = (None, 'gelu')


def _activated(gate: Tensor, activation: Optional[str]) -> Tensor:
    return gate if activation is None else F.gelu(gate)


def _column_major(rows: Tensor) -> bool:
    return rows.stride(0) == 1 and rows.stride(1) != 1


def _blocks(rows: int, block_rows: Optional[int]):
    """Row slices of ``block_rows``; None where one block takes all (no
    slicing at all: each slice is one more operator call)."""
    if not block_rows or block_rows >= rows:
        return (None, )
    return (slice(start, start + block_rows)
            for start in range(0, rows, block_rows))


def _part(tensor: Optional[Tensor], rows: Optional[slice]):
    return tensor if rows is None or tensor is None else tensor[rows]


def _forward(value, gate, weight, bias, activation, block_rows):
    out = value.new_empty(value.shape[0], weight.shape[0])
    # the inputs are in the computation's type already (gated_linear), and
    # the out= calls below have no autocast rules
    with torch.autocast(value.device.type, enabled=False):
        for rows in _blocks(value.shape[0], block_rows):
            product = _part(value, rows) * _activated(
                _part(gate, rows), activation)
            if bias is None:
                torch.mm(product, weight.t(), out=_part(out, rows))
            else:
                torch.addmm(bias, product, weight.t(), out=_part(out, rows))
    return out


def _backward(grad, value, gate, weight, activation, block_rows, needs_weight,
              needs_bias, grad_value, grad_gate):
    """The gradients of value and gate written into ``grad_value`` and
    ``grad_gate`` (None: not needed); the weight's and the bias's returned
    where needed (else None)."""
    grad_weight = None
    grad_bias = grad.sum(0) if needs_bias else None
    for rows in _blocks(value.shape[0], block_rows):
        part, gates, values = (_part(t, rows) for t in (grad, gate, value))
        activated = _activated(gates, activation)
        if needs_weight and grad_weight is None:  # the first block's product
            grad_weight = part.t().mm(values * activated)
        elif needs_weight:
            grad_weight.addmm_(part.t(), values * activated)
        if grad_value is None and grad_gate is None:
            continue
        grad_product = (
            weight.t().mm(part.t()).t()
            if _column_major(value) else part.mm(weight))
        if grad_value is not None:
            torch.mul(grad_product, activated, out=_part(grad_value, rows))
        if grad_gate is not None and activation == 'gelu':
            gelu_backward_into(
                grad_product.mul_(values), gates, out=_part(grad_gate, rows))
        elif grad_gate is not None:
            torch.mul(grad_product, values, out=_part(grad_gate, rows))
    return grad_weight, grad_bias


class _GatedLinear(torch.autograd.Function):
    """``linear(value * act(gate), weight, bias)`` on (M, K) rows, keeping
    its inputs rather than the product; ``block_rows`` at a time."""

    @staticmethod
    def forward(ctx, value, gate, weight, bias, activation, block_rows):
        ctx.activation, ctx.block_rows = activation, block_rows
        ctx.save_for_backward(value, gate, weight)
        return _forward(value, gate, weight, bias, activation, block_rows)

    @staticmethod
    def backward(ctx, grad):
        value, gate, weight = ctx.saved_tensors
        needs_value, needs_gate, needs_weight, needs_bias = \
            ctx.needs_input_grad[:4]
        # empty_like keeps a dense input's layout: the gradients come out
        # as the inputs are laid out (the spatial unit's rows are
        # channel-major planes), so that no copy transposes them later
        grad_value = torch.empty_like(value) if needs_value else None
        grad_gate = torch.empty_like(gate) if needs_gate else None
        grad_weight, grad_bias = _backward(grad, value, gate, weight,
                                           ctx.activation, ctx.block_rows,
                                           needs_weight, needs_bias,
                                           grad_value, grad_gate)
        return grad_value, grad_gate, grad_weight, grad_bias, None, None


class _GatedLinearHalves(torch.autograd.Function):
    """:class:`_GatedLinear` on the halves ``[value, gate]`` of one (M, 2K)
    tensor, both gradients written into one: autograd would concatenate
    the halves' gradients, a copy of the widest map of the channel unit."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, activation, block_rows):
        ctx.activation, ctx.block_rows = activation, block_rows
        ctx.save_for_backward(hidden, weight)
        value, gate = hidden.chunk(2, dim=1)
        return _forward(value, gate, weight, bias, activation, block_rows)

    @staticmethod
    def backward(ctx, grad):
        hidden, weight = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_value, grad_gate = (
            grad_hidden.chunk(2, dim=1) if needs_hidden else (None, None))
        value, gate = hidden.chunk(2, dim=1)
        grad_weight, grad_bias = _backward(grad, value, gate, weight,
                                           ctx.activation, ctx.block_rows,
                                           needs_weight, needs_bias,
                                           grad_value, grad_gate)
        return grad_hidden, grad_weight, grad_bias, None, None


def in_type(dtype: torch.dtype, *tensors: Optional[Tensor]) -> tuple:
    """``tensors`` cast to ``dtype`` (None stays None): what the custom
    functions here take, as autocast would cast a product's operands."""
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def _check_arguments(activation: Optional[str],
                     block_rows: Optional[int]) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f'unknown gate activation {activation!r}; expected '
                         f'one of {ACTIVATIONS}')
    if block_rows is not None and block_rows < 1:
        raise ValueError(f'block_rows must be a positive number of rows or '
                         f'None, got {block_rows}')


def gated_linear(value: Tensor,
                 gate: Tensor,
                 weight: Tensor,
                 bias: Optional[Tensor] = None,
                 activation: Optional[str] = None,
                 block_rows: Optional[int] = None,
                 dtype: Optional[torch.dtype] = None) -> Tensor:
    """``F.linear(value * act(gate), weight, bias)`` for (M, K) rows (any
    strides), keeping ``value`` and ``gate`` for the backward pass instead
    of the product (see the module docstring).

    Everything is cast to ``dtype`` first (under autocast its type, as
    ``F.linear`` would cast the product and the weight); the product is
    computed in that type, as in the plain ops.

    Args:
        value (Tensor): (M, K) values.
        gate (Tensor): (M, K) gates, before the activation.
        weight (Tensor): (C_out, K) weight.
        bias (Tensor, optional): (C_out, ) bias. Defaults to None.
        activation (str, optional): ``None`` (identity) or ``'gelu'``
            (exact, erf-based) on the gate. Defaults to None.
        block_rows (int, optional): rows per pass, forward and backward,
            so that a block's intermediates stay in cache; None: all rows
            at once. Defaults to None.
        dtype (torch.dtype, optional): the computation's type; None: the
            type autocast would run ``value``'s products in. Defaults to
            None.

    Returns:
        Tensor: (M, C_out).

    Raises:
        ValueError: for an unknown activation or fewer than one row per
            block.
    """
    _check_arguments(activation, block_rows)
    dtype = dtype or context.autocast_dtype(value)
    value, gate, weight, bias = in_type(dtype, value, gate, weight, bias)
    return _GatedLinear.apply(value, gate, weight, bias, activation,
                              block_rows)


def gated_linear_halves(hidden: Tensor,
                        weight: Tensor,
                        bias: Optional[Tensor] = None,
                        activation: Optional[str] = None,
                        block_rows: Optional[int] = None,
                        dtype: Optional[torch.dtype] = None) -> Tensor:
    """:func:`gated_linear` of the two halves of (M, 2K) rows, ``value,
    gate = hidden.chunk(2, dim=1)``, as the channel unit's ``fc1`` writes
    them; their gradient comes back as one tensor, not concatenated by
    autograd from two.

    Args:
        hidden (Tensor): (M, 2K) rows, the values then the gates (before
            the activation).
        weight (Tensor): (C_out, K) weight.
        bias (Tensor, optional): (C_out, ) bias. Defaults to None.
        activation (str, optional): ``None`` (identity) or ``'gelu'``
            (exact, erf-based) on the gates. Defaults to None.
        block_rows (int, optional): rows per pass, forward and backward;
            None: all rows at once. Defaults to None.
        dtype (torch.dtype, optional): the computation's type; None: the
            type autocast would run ``hidden``'s products in. Defaults to
            None.

    Returns:
        Tensor: (M, C_out).

    Raises:
        ValueError: for an odd width, an unknown activation or fewer than
            one row per block.
    """
    _check_arguments(activation, block_rows)
    if hidden.shape[1] % 2:
        raise ValueError(f'gated_linear_halves needs an even number of '
                         f'columns, got {hidden.shape[1]}')
    dtype = dtype or context.autocast_dtype(hidden)
    hidden, weight, bias = in_type(dtype, hidden, weight, bias)
    return _GatedLinearHalves.apply(hidden, weight, bias, activation,
                                    block_rows)
