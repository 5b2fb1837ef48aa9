"""The spatial unit's first projection as two halves of channel-major
planes, for training.

``pwconv1`` maps channels-last rows (N, H, W, C) to 2C channel-major planes
(:func:`.gate_units.planes_by_gemm`), split into the gate and the value.
Autograd would take that split's gradient back by concatenating the two
halves' gradients (a copy of the 2C-wide map, in NCHW order) and then
transposing it to channel-major planes for the GEMMs (a second copy).
:func:`split_planes_by_gemm` reads each half's gradient where it lies
instead: the input's gradient as two GEMMs accumulated into one, the
weight's and bias's written by halves.

The value goes on through a GELU, whose gradient comes back in whatever
layout the depthwise convolutions' backward passes leave (NCHW from the
7x7 one's), where the GEMMs want channel-major planes: with
``activation='gelu'`` the GELU is part of the function, and its backward
writes the value's gradient straight into channel-major planes, one pass
where autograd would make two (GELU's backward, then the copy).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import context
from .compat import GELU_BACKWARD_IS_EXACT, gelu_backward_into
from .gated_linear import ACTIVATIONS, in_type


def _as_planes(grad: Tensor) -> Tensor:
    """An NCHW map's gradient as (C, N H W) rows of channels: a view where
    it is laid out as channel-major planes, a copy otherwise."""
    return grad.transpose(0, 1).reshape(grad.shape[1], -1)


def _gelu_backward_as(grad: Tensor, value: Tensor) -> Tensor:
    """``grad * GELU'(value)`` in ``value``'s layout (channel-major planes),
    one pass whatever ``grad``'s layout."""
    out = torch.empty_like(value)
    if not GELU_BACKWARD_IS_EXACT and value.device.type == 'cpu':
        grad = out.copy_(grad)  # wrong across layouts there (.compat)
    return gelu_backward_into(grad, value, out=out)


class _SplitPlanes(torch.autograd.Function):
    """``W @ rows^T + b`` into (2C, N, H, W) planes, returned as its two
    halves, NCHW views of channel-major memory: the gate, and the value
    (through ``activation`` where one is given: a new tensor laid out
    alike)."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation):
        batch, height, width, channels = x.shape
        rows = x.reshape(-1, channels)
        needs_x, needs_weight, _, _ = ctx.needs_input_grad
        ctx.x_shape, ctx.weight_shape = x.shape, weight.shape
        # a half nothing used comes back as None, not as a map of zeros
        ctx.set_materialize_grads(False)
        if bias is None:
            planes = torch.mm(weight, rows.t())
        else:
            planes = torch.addmm(bias[:, None], weight, rows.t())
        planes = planes.view(planes.shape[0], batch, height, width)
        gate, value = planes.transpose(0, 1).chunk(2, dim=1)
        # what a product's backward keeps (the rows for the weight's
        # gradient, the weight for the input's), and what GELU's keeps
        ctx.save_for_backward(rows if needs_weight else None,
                              weight if needs_x else None,
                              value if activation else None)
        if activation == 'gelu':
            value = F.gelu(value)  # in the value's layout, channel-major
        return gate, value

    @staticmethod
    def backward(ctx, grad_gate, grad_value):
        # value: the activation's input, kept only where there is one
        rows, weight, value = ctx.saved_tensors
        needs_x, needs_weight, needs_bias, _ = ctx.needs_input_grad
        if grad_value is not None and value is not None:
            grad_value = _gelu_backward_as(grad_value, value)
        half = ctx.weight_shape[0] // 2
        # (the half's output channels, its gradient as (C, N H W) rows)
        halves = [(slice(index * half, (index + 1) * half), _as_planes(grad))
                  for index, grad in enumerate((grad_gate, grad_value))
                  if grad is not None]
        if not halves:
            return None, None, None, None
        grad_x = grad_weight = grad_bias = None
        if needs_x:  # one GEMM per half, accumulated
            for channels, grad in halves:
                if grad_x is None:
                    grad_x = torch.mm(grad.t(), weight[channels])
                else:
                    grad_x.addmm_(grad.t(), weight[channels])
            grad_x = grad_x.view(ctx.x_shape)
        # the parameters' gradients written by halves (zero where a half
        # had none)
        new = (torch.empty if len(halves) == 2 else torch.zeros)
        like = dict(dtype=halves[0][1].dtype, device=halves[0][1].device)
        if needs_weight:
            grad_weight = new(ctx.weight_shape, **like)
            for channels, grad in halves:
                torch.mm(grad, rows, out=grad_weight[channels])
        if needs_bias:
            grad_bias = new(ctx.weight_shape[0], **like)
            for channels, grad in halves:
                torch.sum(grad, 1, out=grad_bias[channels])
        return grad_x, grad_weight, grad_bias, None


def split_planes_by_gemm(
        conv: nn.Conv2d,
        x: Tensor,
        dtype: Optional[torch.dtype] = None,
        activation: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    """The 1x1 convolution ``conv`` of channels-last rows (N, H, W, C_in)
    to channel-major planes (2C, N, H, W), as the NCHW views of its two
    halves ``(gate, act(value))``; their gradients are read where they lie.

    Args:
        conv (nn.Conv2d): the 1x1 convolution, with an even number of
            output channels.
        x (Tensor): channels-last input (N, H, W, C_in).
        dtype (torch.dtype, optional): the computation's type; None: the
            type autocast would run ``x``'s products in (``x``'s outside
            autocast), as ``F.linear`` would cast. Defaults to None.
        activation (str, optional): ``None`` (identity) or ``'gelu'``
            (exact, erf-based) on the value, computed in ``dtype`` as
            ``F.gelu`` after the product would be. Defaults to None.

    Returns:
        tuple[Tensor, Tensor]: the gate and the (activated) value, each
        (N, C, H, W), laid out as channel-major planes.

    Raises:
        ValueError: for an unknown activation.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f'unknown value activation {activation!r}; '
                         f'expected one of {ACTIVATIONS}')
    dtype = dtype or context.autocast_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        return _SplitPlanes.apply(
            *in_type(dtype, x, conv.weight.flatten(1), conv.bias), activation)
