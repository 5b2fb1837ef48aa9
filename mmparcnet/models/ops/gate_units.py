"""Fast implementations of the two gate units (:mod:`..layers.gate_units`).

Each is ``fn(unit, ctx, x)`` for a unit, its call's :class:`.Context` and
its channels-last input (N, H, W, C); :mod:`.registry` says which runs
when. They compute what the units' plain forwards compute, by other means:

- **Layout.** The blocks keep their tensors channels-last, where the
  channel norms and the channel unit's linear layers read rows of channels,
  while the spatial unit's depthwise convolutions want each channel as a
  plane. Its two 1x1 convolutions change the layout for free: a GEMM reads
  a transposed operand in place, so ``pwconv1`` writes channel-major planes
  (C, N, H, W), handed on as an NCHW view, and ``pwconv2`` reads them back
  to rows.
- **Inference.** Activations and gating in place on fresh intermediates (a
  second map costs page faults on the CPU: a few per cent of the
  detection-size forward pass); in float32 on the CPU, oneDNN's GEMMs
  (:mod:`.onednn`), the channel unit in blocks of rows that stay in cache.
- **Training.** Each unit's last projection by :func:`.gated_linear`
  (the channel unit's :func:`.gated_linear_halves`), which keeps the
  product's factors for the backward pass, not the product; the spatial
  unit's first projection and its GELU by :func:`.split_planes_by_gemm`.
  Both take the gradients of a projection split in two back without
  concatenating them, the latter GELU's written as channel-major planes.
- **On CUDA, opt-in.** Triton kernels (:mod:`.triton`): the channel unit's
  gated GELU, and the spatial unit's sum, gating and projection; the 7x7
  convolution in channels-last memory, on cuDNN (:mod:`.local_conv`).
- **Exporting.** The forms deployment runtimes run fastest (measured in ONNX
  Runtime, docs/speed.md): a split projection as one product per half
  (slicing a product's output is a copy there, not a view), and maps as
  contiguous NCHW, with the transposes read by the products.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .compat import gelu, gelu_
from .context import Context, traced_size
from .gated_linear import gated_linear, gated_linear_halves
from .onednn import linear as onednn_linear
from .split_projection import split_planes_by_gemm

# rows per pass of the channel unit on the CPU, so that a block's
# intermediates stay in cache (docs/speed.md)
CPU_BLOCK_ROWS = 4096

# -- the spatial unit: its 1x1 convolutions as GEMMs between layouts ----------


def planes_by_gemm(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """1x1 convolution from channels-last rows (N, H, W, C_in) to
    channel-major planes (C_out, N, H, W), returned as an NCHW view:
    ``W @ x^T`` as one GEMM."""
    batch, height, width, channels = x.shape
    weight, rows = conv.weight.flatten(1), x.reshape(-1, channels)
    if conv.bias is None:
        planes = torch.mm(weight, rows.t())
    else:
        planes = torch.addmm(conv.bias[:, None], weight, rows.t())
    return planes.view(planes.shape[0], batch, height, width).transpose(0, 1)


def planes_by_onednn(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """:func:`planes_by_gemm` by oneDNN's GEMM, with the rows of ``x`` in the
    place of its weight, then the bias by rows: measured faster than MKL's
    addmm at every stage in float32 CPU inference."""
    batch, height, width, channels = x.shape
    planes = onednn_linear(
        conv.weight.flatten(1), x.reshape(-1, channels), None)
    if conv.bias is not None:
        planes.add_(conv.bias[:, None])
    return planes.view(planes.shape[0], batch, height, width).transpose(0, 1)


def gate_and_gelu_value(conv: nn.Conv2d, x: Tensor, ctx: Context) -> Tuple:
    """:func:`planes_by_gemm`'s two halves: the gate, and the value through
    GELU."""
    gate, value = planes_by_gemm(conv, x).chunk(2, dim=1)
    return gate, gelu(value)


def gate_and_gelu_value_in_place(conv: nn.Conv2d, x: Tensor,
                                 ctx: Context) -> Tuple:
    """:func:`gate_and_gelu_value`, GELU in place."""
    gate, value = planes_by_gemm(conv, x).chunk(2, dim=1)
    return gate, gelu_(value)


def gate_and_gelu_value_onednn(conv: nn.Conv2d, x: Tensor,
                               ctx: Context) -> Tuple:
    """:func:`gate_and_gelu_value_in_place` by :func:`planes_by_onednn`."""
    gate, value = planes_by_onednn(conv, x).chunk(2, dim=1)
    return gate, gelu_(value)


def gate_and_gelu_value_for_training(conv: nn.Conv2d, x: Tensor,
                                     ctx: Context) -> Tuple:
    """:func:`gate_and_gelu_value` by :func:`.split_planes_by_gemm`, whose
    backward reads the halves' gradients where they lie and writes GELU's
    into channel-major planes."""
    return split_planes_by_gemm(conv, x, ctx.dtype, activation='gelu')


def _as_rows(planes: Tensor) -> Tensor:
    """NCHW views of (C, N, H, W) planes as (N H W, C) rows: a transposed
    operand for the GEMM that reads them."""
    return planes.transpose(0, 1).reshape(planes.shape[1], -1).t()


def gated_rows(conv: nn.Conv2d, mixed: Tensor, gate: Tensor,
               ctx: Context) -> Tensor:
    """``conv1x1(mixed * gate)`` from NCHW views of planes to channels-last
    rows (N, H, W, C_out), in plain operators."""
    batch, _, height, width = mixed.shape
    out = F.linear(
        _as_rows(mixed) * _as_rows(gate), conv.weight.flatten(1), conv.bias)
    return out.view(batch, height, width, out.shape[-1])


def gated_rows_in_place(conv: nn.Conv2d, mixed: Tensor, gate: Tensor,
                        ctx: Context) -> Tensor:
    """:func:`gated_rows`, the product written into ``mixed`` (a fresh
    intermediate)."""
    batch, _, height, width = mixed.shape
    rows = _as_rows(mixed).mul_(_as_rows(gate))
    out = F.linear(rows, conv.weight.flatten(1), conv.bias)
    return out.view(batch, height, width, out.shape[-1])


def gated_rows_keeping_less(conv: nn.Conv2d, mixed: Tensor, gate: Tensor,
                            ctx: Context) -> Tensor:
    """:func:`gated_rows` by :func:`.gated_linear`, which keeps ``mixed`` and
    ``gate`` for the backward pass instead of their product."""
    batch, _, height, width = mixed.shape
    out = gated_linear(
        _as_rows(mixed),
        _as_rows(gate),
        conv.weight.flatten(1),
        conv.bias,
        dtype=ctx.dtype)
    return out.view(batch, height, width, out.shape[-1])


def oversized_plus_local(unit: nn.Module, value: Tensor) -> Tensor:
    """The spatial unit's two depthwise convolutions, summed (the 7x7 one
    as the unit chose, :mod:`.local_conv`)."""
    return unit.dwconv1(value) + unit.local(unit, value)


def spatial_on_planes(unit: nn.Module,
                      ctx: Context,
                      x: Tensor,
                      *,
                      project: Callable,
                      finish: Callable,
                      mix: Callable = oversized_plus_local) -> Tensor:
    """The spatial unit on channel-major planes: its first projection and
    GELU by ``project``, its last projection by ``finish``, its depthwise
    convolutions by ``mix`` (a benchmark's cost accounting leaves one
    out)."""
    gate, value = project(unit.pwconv1, x, ctx)
    return finish(unit.pwconv2, mix(unit, value), gate, ctx)


# The four forms, by context (:mod:`.registry`). Plain functions rather than
# partials: Dynamo of PyTorch 2.1 cannot call a partial.


def spatial_planes(unit, ctx, x, mix=oversized_plus_local):
    """Public operators only (for tracers)."""
    return spatial_on_planes(
        unit, ctx, x, project=gate_and_gelu_value, finish=gated_rows, mix=mix)


def spatial_planes_in_place(unit, ctx, x, mix=oversized_plus_local):
    """Inference: GELU and gating in place."""
    return spatial_on_planes(
        unit,
        ctx,
        x,
        project=gate_and_gelu_value_in_place,
        finish=gated_rows_in_place,
        mix=mix)


def spatial_planes_onednn(unit, ctx, x, mix=oversized_plus_local):
    """Float32 CPU inference: the first projection by oneDNN, in place."""
    return spatial_on_planes(
        unit,
        ctx,
        x,
        project=gate_and_gelu_value_onednn,
        finish=gated_rows_in_place,
        mix=mix)


def spatial_planes_keeping_less(unit, ctx, x, mix=oversized_plus_local):
    """Training: the split projection with its GELU, and the gated
    projection that keeps its factors."""
    return spatial_on_planes(
        unit,
        ctx,
        x,
        project=gate_and_gelu_value_for_training,
        finish=gated_rows_keeping_less,
        mix=mix)


def spatial_planes_triton(unit, ctx, x, mix=oversized_plus_local):
    """On CUDA: the sum of the two depthwise convolutions, the gating and
    the last projection by one Triton kernel each way around a GEMM
    (:mod:`.triton.gated_sum`), keeping the sum and the gate for the
    backward pass. A ``mix`` other than the two convolutions' sum (a
    benchmark's) is gated alone."""
    from .triton.gated_sum import gated_sum_linear  # where Triton runs
    project = (
        gate_and_gelu_value_for_training if ctx.grad else gate_and_gelu_value)
    gate, value = project(unit.pwconv1, x, ctx)
    if mix is oversized_plus_local:
        first, second = unit.dwconv1(value), unit.local(unit, value)
    else:
        first, second = mix(unit, value), None
    conv = unit.pwconv2
    out = gated_sum_linear(
        first, second, gate, conv.weight.flatten(1), dtype=ctx.dtype)
    if conv.bias is not None:
        out = out + conv.bias.to(out.dtype)
    batch, height, width, _ = x.shape
    return out.view(batch, height, width, out.shape[-1])


# -- the spatial unit as exported ---------------------------------------------


def _map_sizes(x: Tensor, channels_last: bool) -> Tuple:
    """Batch, height and width of a map, shared by a stage's blocks while
    the legacy exporter traces (:func:`.context.traced_size`)."""
    first = 1 if channels_last else 2
    return (traced_size('batch', lambda: x.shape[0]),
            traced_size('height', lambda: x.shape[first]),
            traced_size('width', lambda: x.shape[first + 1]))


def _rows_to_maps(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``W @ rows^T (+ b)``: channels-last (N, H, W, C_in) to contiguous NCHW
    (N, C_out, H, W), one product per sample."""
    batch, height, width = _map_sizes(x, channels_last=True)
    rows = x.reshape(batch, -1, weight.shape[1])
    maps = torch.matmul(weight, rows.transpose(1, 2))
    if bias is not None:
        maps = maps + bias[:, None]
    return maps.reshape(batch, weight.shape[0], height, width)


def spatial_exported(unit: nn.Module,
                     ctx: Context,
                     x: Tensor,
                     mix: Callable = oversized_plus_local) -> Tensor:
    """The spatial unit in the form ONNX Runtime runs fastest: one product
    per half of ``pwconv1`` into contiguous NCHW maps, and ``pwconv2`` as
    ``W @ (mixed * gate)`` per sample, then to rows."""
    conv = unit.pwconv1
    biases = (None, None) if conv.bias is None else conv.bias.chunk(2)
    gate, value = (_rows_to_maps(
        x, weight,
        bias) for weight, bias in zip(conv.weight.flatten(1).chunk(2), biases))
    mixed = mix(unit, F.gelu(value))
    weight = unit.pwconv2.weight.flatten(1)
    batch, height, width = _map_sizes(mixed, channels_last=False)
    maps = (mixed * gate).reshape(batch, weight.shape[1], -1)
    out = torch.matmul(weight, maps).transpose(1, 2)
    if unit.pwconv2.bias is not None:
        out = out + unit.pwconv2.bias
    return out.reshape(batch, height, width, -1)


# -- the channel unit ---------------------------------------------------------


def channel_in_place(unit: nn.Module, ctx: Context, x: Tensor) -> Tensor:
    """``fc2(a * GELU(b))``, GELU and product written into ``fc1``'s
    output (a fresh intermediate)."""
    value, gate = unit.fc1(x).chunk(2, dim=-1)
    return unit.fc2(gelu_(gate).mul_(value))


def channel_keeping_less(unit: nn.Module, ctx: Context, x: Tensor) -> Tensor:
    """``fc2(a * GELU(b))`` keeping ``fc1``'s output for the backward pass
    but not ``GELU(b)`` and the product, its gradient as one tensor
    (:func:`.gated_linear_halves`), in blocks of rows on the CPU (a GPU
    wants whole GEMMs)."""
    hidden = unit.fc1(x)
    out = gated_linear_halves(
        hidden.reshape(-1, hidden.shape[-1]),
        unit.fc2.weight,
        unit.fc2.bias,
        activation='gelu',
        block_rows=CPU_BLOCK_ROWS if ctx.device == 'cpu' else None,
        dtype=ctx.dtype)
    return out.view(*x.shape[:-1], out.shape[-1])


def channel_onednn(unit: nn.Module,
                   ctx: Context,
                   x: Tensor,
                   block_rows: Optional[int] = CPU_BLOCK_ROWS) -> Tensor:
    """``fc2(a * GELU(b))`` by oneDNN's GEMMs, ``block_rows`` rows at a time,
    GELU and product in place. (Separate in-place GELU and product passes
    measured faster than oneDNN's GELU and multiply epilogues, at every
    stage.)"""
    rows = x.reshape(-1, x.shape[-1])
    step = block_rows or rows.shape[0]
    if rows.shape[0] <= step:
        out = _onednn_rows(rows, unit.fc1, unit.fc2)
    else:
        out = x.new_empty(rows.shape[0], unit.fc2.out_features)
        for start in range(0, rows.shape[0], step):
            out[start:start + step] = _onednn_rows(rows[start:start + step],
                                                   unit.fc1, unit.fc2)
    return out.view(*x.shape[:-1], out.shape[-1])


def _onednn_rows(rows: Tensor, fc1: nn.Linear, fc2: nn.Linear) -> Tensor:
    hidden = fc2.in_features
    value_weight, gate_weight = fc1.weight.split(hidden)
    value_bias, gate_bias = fc1.bias.split(hidden)
    gate = gelu_(onednn_linear(rows, gate_weight, gate_bias))
    value = onednn_linear(rows, value_weight, value_bias).mul_(gate)
    return onednn_linear(value, fc2.weight, fc2.bias)


def channel_triton(unit: nn.Module, ctx: Context, x: Tensor) -> Tensor:
    """``fc2(a * GELU(b))`` with the gated GELU as one Triton kernel each
    way (:mod:`.triton.gelu_gate`), keeping ``fc1``'s output for the
    backward pass."""
    from .triton.gelu_gate import gelu_gate  # Triton only where it runs
    return unit.fc2(gelu_gate(unit.fc1(x)))


def channel_exported(unit: nn.Module, ctx: Context, x: Tensor) -> Tensor:
    """``fc2(a * GELU(b))`` with one product per half of ``fc1``."""
    value_weight, gate_weight = unit.fc1.weight.chunk(2)
    value_bias, gate_bias = ((None, None) if unit.fc1.bias is None else
                             unit.fc1.bias.chunk(2))
    gate = F.gelu(F.linear(x, gate_weight, gate_bias))
    return unit.fc2(F.linear(x, value_weight, value_bias) * gate)
