"""The oversized convolution as Toeplitz matrix products.

Each 1-D correlation is a product with its Toeplitz matrix
(:mod:`.toeplitz`): per channel ``T_h @ X @ T_w^T``, two batched GEMMs. That
is H + W multiply-adds per output element, half the direct path's (which
also multiplies the padding), and GEMMs run near the machine's peak where
depthwise convolutions with long kernels do not.

Eagerly the map is taken as channel-major planes (C, N, H, W), the layout
the spatial gate unit hands over, so that both products are plain ``bmm``
calls; a custom autograd function keeps the kernels for the backward pass
and builds the matrices again, where autograd would keep the matrices (as
large as the map itself at detection sizes). Tracers get the same products
in plain operators. Exporters get :func:`exported_matmul`, which resizes
the kernels in the graph and gathers the matrices by a computed index, so
that the graph holds no operator whose shape depends on the input:
convolutions with an input-sized kernel ("kernel of unknown shape") and FFTs
have no ONNX export with dynamic sizes; matrix products, resizes and gathers
do.
"""
from typing import Tuple

import torch
from torch import Tensor

from .. import context
from ..context import Context, traced_size
from .resize import resize_1d
from .toeplitz import gather_index, toeplitz, toeplitz_adjoint


def _rows_by_height(maps: Tensor) -> Tensor:
    """(C, N, H, W) maps as contiguous (C, H, N, W) memory, seen as (C, H, N
    W): each channel's vertical pass one GEMM over the whole batch (a copy
    unless N is 1)."""
    channels, batch, height, width = maps.shape
    return maps.transpose(1, 2).reshape(channels, height, batch * width)


def _maps_by_sample(rows: Tensor, batch: int, width: int) -> Tensor:
    """The inverse of :func:`_rows_by_height`: (C, H, N W) rows to
    contiguous (C, N, H, W) maps (a copy unless N is 1)."""
    channels, height, _ = rows.shape
    maps = rows.view(channels, height, batch, width).transpose(1, 2)
    return maps.contiguous()


def toeplitz_product(planes: Tensor,
                     k_h: Tensor,
                     k_w: Tensor,
                     gather: bool = False) -> Tuple[Tensor, Tensor]:
    """``T_h @ X @ T_w^T`` on each channel-major plane (C, N, H, W) for
    (C, K) kernels, with the horizontal pass ``X @ T_w^T`` as
    :func:`_rows_by_height` lays it out (the backward pass needs it);
    ``gather``: the matrices in the form for symbolic sizes
    (:func:`.toeplitz.toeplitz`).

    Each pass is one GEMM per channel over the whole batch: the horizontal
    one on the planes' (N H, W) rows as they lie, the vertical one on the
    (H, N W) columns of the batch laid side by side. A batched product of
    each sample with a shared matrix would instead copy the matrix once per
    sample and run N times as many small GEMMs.
    """
    channels, batch, height, width = planes.shape
    vertical = toeplitz(k_h, height, gather=gather)
    horizontal = toeplitz(k_w, width, gather=gather)
    across = torch.bmm(
        planes.reshape(channels, batch * height, width),
        horizontal.transpose(1, 2))
    across = _rows_by_height(across.view(channels, batch, height, width))
    return _maps_by_sample(torch.bmm(vertical, across), batch, width), across


class _ToeplitzProduct(torch.autograd.Function):
    """:func:`toeplitz_product` keeping the kernels for the backward pass
    instead of the Toeplitz matrices, which autograd would keep and which
    are as large as the map itself at detection sizes (C(H^2 + W^2) against
    CNHW elements); they are built again from the kernels, two small copies.
    Every product of the backward pass is one GEMM per channel too, and the
    kernels' gradients come from the matrices' by
    :func:`.toeplitz.toeplitz_adjoint`.
    """

    @staticmethod
    def forward(ctx, planes, k_h, k_w):
        out, across = toeplitz_product(planes, k_h, k_w)
        ctx.save_for_backward(planes, across, k_h, k_w)
        return out

    @staticmethod
    def backward(ctx, grad):
        planes, across, k_h, k_w = ctx.saved_tensors
        needs_planes, needs_h, needs_w = ctx.needs_input_grad
        channels, batch, height, width = planes.shape
        grad_rows = _rows_by_height(grad)  # (C, H, N W)
        grad_h = grad_w = grad_planes = None
        if needs_h:  # G @ A^T, the batch summed inside the GEMM
            grad_h = toeplitz_adjoint(
                torch.bmm(grad_rows, across.transpose(1, 2)), k_h.shape[1])
        if needs_planes or needs_w:
            vertical = toeplitz(k_h, height)
            grad_across = _maps_by_sample(
                torch.bmm(vertical.transpose(1, 2), grad_rows), batch,
                width).view(channels, batch * height, width)
            if needs_w:
                grad_w = toeplitz_adjoint(
                    torch.bmm(
                        grad_across.transpose(1, 2),
                        planes.reshape(channels, batch * height, width)),
                    k_w.shape[1])
            if needs_planes:
                grad_planes = torch.bmm(grad_across, toeplitz(k_w, width))
                grad_planes = grad_planes.view(planes.shape)
        return grad_planes, grad_h, grad_w


def matmul(x: Tensor, k_h: Tensor, k_w: Tensor, ctx: Context) -> Tensor:
    """The correlation of (N, C, H, W) maps with kernels already fitted to
    the map ((C, 1, K_h, 1), (C, 1, 1, K_w)), by Toeplitz products; the
    result is an NCHW view of channel-major memory."""
    # under autocast in its type, as autocast would run the products
    # (views: indexing would cost a zero-filled copy each in the backward)
    dtype = ctx.dtype
    k_h = k_h.reshape(k_h.shape[0], k_h.shape[2]).to(dtype)
    k_w = k_w.reshape(k_w.shape[0], k_w.shape[3]).to(dtype)
    # channel-major planes (C, N, H, W) (a copy unless x is laid out so)
    planes = x.transpose(0, 1).to(dtype).contiguous()
    if ctx.tracer:  # plain ops for them
        out, _ = toeplitz_product(planes, k_h, k_w,
                                  ctx.tracer == context.DYNAMO)
    else:
        with torch.autocast(ctx.device, enabled=False):
            out = _ToeplitzProduct.apply(planes, k_h, k_w)
    return out.transpose(0, 1)


def exported_matmul(x: Tensor, k_h: Tensor, k_w: Tensor, mode: str) -> Tensor:
    """The matmul path as exporters record it, from the stored kernels
    (sizes may be symbolic): resized in the graph in interpolate mode."""
    height = traced_size('height', lambda: x.shape[-2])
    width = traced_size('width', lambda: x.shape[-1])
    k_h, k_w = k_h[:, 0, :, 0], k_w[:, 0, 0, :]
    spans_map = mode == 'interpolate'
    if spans_map:
        taps_h = traced_size('taps_h', lambda: 2 * height - 1)
        taps_w = traced_size('taps_w', lambda: 2 * width - 1)
        k_h, k_w = resize_1d(k_h, taps_h), resize_1d(k_w, taps_w)
    index_h = traced_size('index_h', lambda: gather_index(height, x.device))
    index_w = traced_size('index_w', lambda: gather_index(width, x.device))
    vertical = toeplitz(k_h, height, spans_map, index=index_h)  # (C, H, H)
    # X @ T_w^T, and T_w^T is the Toeplitz matrix of the reversed kernel
    # (reversed after resizing: at one tap, resizing keeps the first)
    across = toeplitz(k_w.flip(1), width, spans_map, index=index_w)
    out = torch.matmul(vertical.to(x.dtype), x)
    return torch.matmul(out, across.to(x.dtype))
