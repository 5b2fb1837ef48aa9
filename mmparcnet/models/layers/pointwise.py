"""The gate units' pointwise layers, as GEMMs in the layouts the units need.

ParCNetV2's blocks keep their tensors channels-last (N, H, W, C), where the
channel norms and the channel unit's linear layers read rows of channels;
the spatial unit's depthwise convolutions want each channel as a plane. Its
two 1x1 convolutions change the layout for free: a GEMM reads a transposed
operand in place, so ``pwconv1`` writes channel-major planes (C, N, H, W)
(handed on as an NCHW view) and ``pwconv2`` reads them back to rows.

The classes subclass ``nn.Conv2d``, so that parameter names and shapes match
the checkpoints and ``Conv2d`` initialisers reach them; only ``forward``
differs. Fast paths (all behind the switch in :mod:`.runtime`, each checked
against the plain computation in the tests):

- float32 CPU inference: oneDNN's GEMM (:mod:`.fused_linear`), activation
  and gating in place on fresh intermediates (a second map costs page faults
  on the CPU: a few per cent of the detection-size forward pass), the
  channel unit in blocks of rows that stay in cache;
- training: the last projection of each unit by :func:`.gated_linear`,
  which keeps the product's factors for the backward pass, not the product.

While exporting, the layers take the forms that deployment runtimes run
fastest (measured in ONNX Runtime, docs/speed.md): a split projection as one
product per half (slicing a product's output is a copy there, not a view),
and maps as contiguous NCHW, with the transposes read by the products.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fused_linear import fused_linear_applies, linear
from .gated_linear import gated_linear, gated_linear_applies
from .runtime import (autograd_records, fast_paths_enabled, is_exporting,
                      plain_ops_needed, traced_size)
from .torch_ops import gelu_, stride_safe_gelu


def _in_place_allowed(*tensors: Tensor) -> bool:
    """In-place shortcuts need: fast paths on, and neither autograd nor an
    exporter or compiler recording operations on ``tensors``."""
    return fast_paths_enabled() and not (autograd_records(*tensors)
                                         or plain_ops_needed())


def gelu(x: Tensor) -> Tensor:
    """GELU (exact), in place on ``x`` (a fresh intermediate) where
    allowed."""
    return gelu_(x) if _in_place_allowed(x) else stride_safe_gelu(x)


def gated(x: Tensor, gate: Tensor) -> Tensor:
    """``x * gate``, written into ``x`` (a fresh intermediate) where
    allowed."""
    return x.mul_(gate) if _in_place_allowed(x, gate) else x * gate


class PlanesConv1x1(nn.Conv2d):
    """1x1 convolution from channels-last rows (N, H, W, C_in) to
    channel-major planes (C_out, N, H, W), returned as an NCHW view (the
    layout depthwise convolutions take): ``W @ x^T`` as one GEMM."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, height, width, channels = x.shape
        weight, bias = self.weight.flatten(1), self.bias
        rows = x.reshape(-1, channels)
        if fused_linear_applies(x, weight, *(() if bias is None else
                                             (bias, ))):
            # oneDNN's GEMM with the rows of x in the place of its weight,
            # then the bias by rows: measured faster than MKL's addmm at
            # every stage in float32 CPU inference
            planes = linear(weight, rows, None)
            if bias is not None:
                planes.add_(bias[:, None])
        elif bias is None:
            planes = torch.mm(weight, rows.t())
        else:
            planes = torch.addmm(bias[:, None], weight, rows.t())
        return planes.view(-1, batch, height, width).transpose(0, 1)

    def split(self, x: Tensor, parts: int) -> Tuple[Tensor, ...]:
        """``self(x).chunk(parts, dim=1)``; while exporting, one product per
        part into contiguous NCHW maps."""
        if not is_exporting():
            return self(x).chunk(parts, dim=1)
        weights = self.weight.flatten(1).chunk(parts)
        biases = ((None, ) *
                  parts if self.bias is None else self.bias.chunk(parts))
        return tuple(
            _rows_to_maps(x, weight, bias)
            for weight, bias in zip(weights, biases))


def _rows_to_maps(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``W @ rows^T (+ b)``: channels-last (N, H, W, C_in) to contiguous NCHW
    (N, C_out, H, W), one product per sample."""
    batch, height, width = _map_sizes(x, channels_last=True)
    rows = x.reshape(batch, -1, weight.shape[1])
    maps = torch.matmul(weight, rows.transpose(1, 2))
    if bias is not None:
        maps = maps + bias[:, None]
    return maps.reshape(batch, weight.shape[0], height, width)


def _map_sizes(x: Tensor, channels_last: bool) -> Tuple:
    """Batch, height and width of a map, shared by a stage's blocks while
    the legacy exporter traces (:func:`.runtime.traced_size`)."""
    first = 1 if channels_last else 2
    return (traced_size('batch', lambda: x.shape[0]),
            traced_size('height', lambda: x.shape[first]),
            traced_size('width', lambda: x.shape[first + 1]))


class GatedConv1x1(nn.Conv2d):
    """``conv1x1(x * gate)`` from NCHW views of channel-major planes (as
    :class:`PlanesConv1x1` gives them) to channels-last rows (N, H, W,
    C_out); in training by :func:`.gated_linear.gated_linear`, which keeps
    ``x`` and ``gate`` for the backward pass instead of their product."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        weight = self.weight.flatten(1)
        if is_exporting():  # W @ (x * gate), per sample, then to rows
            batch, height, width = _map_sizes(x, channels_last=False)
            maps = (x * gate).reshape(batch, weight.shape[1], -1)
            out = torch.matmul(weight, maps).transpose(1, 2)
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(batch, height, width, -1)
        batch, channels, height, width = x.shape
        # (C, N, H, W) planes seen as (N H W, C) rows: a transposed operand
        rows = x.transpose(0, 1).reshape(channels, -1).t()
        gate_rows = gate.transpose(0, 1).reshape(channels, -1).t()
        if gated_linear_applies(rows, gate_rows, weight):
            out = gated_linear(rows, gate_rows, weight, self.bias)
        else:
            out = F.linear(gated(rows, gate_rows), weight, self.bias)
        return out.view(batch, height, width, -1)


def gelu_gated_linear(x: Tensor,
                      fc1: nn.Linear,
                      fc2: nn.Linear,
                      block_rows: Optional[int] = None) -> Tensor:
    """``fc2(a * GELU(b))`` where ``a, b = split(fc1(x))``, on rows of
    channels (..., C).

    Float32 CPU inference goes through oneDNN's GEMMs, ``block_rows`` rows
    at a time; training keeps ``fc1``'s output for the backward pass but not
    ``GELU(b)`` and the product (also in blocks of rows on the CPU; a GPU
    wants whole GEMMs).
    """
    if fused_linear_applies(x, fc1.weight, fc1.bias, fc2.weight):
        return _fused_rows_in_blocks(x, fc1, fc2, block_rows)
    if is_exporting():  # one product per half
        value_weight, gate_weight = fc1.weight.chunk(2)
        value_bias, gate_bias = ((None, None)
                                 if fc1.bias is None else fc1.bias.chunk(2))
        gate = F.gelu(F.linear(x, gate_weight, gate_bias))
        return fc2(F.linear(x, value_weight, value_bias) * gate)
    value, gate = fc1(x).chunk(2, dim=-1)
    if gated_linear_applies(value, gate, fc2.weight):
        return gated_linear(
            value.reshape(-1, value.shape[-1]),
            gate.reshape(-1, gate.shape[-1]),
            fc2.weight,
            fc2.bias,
            activation='gelu',
            block_rows=block_rows if x.device.type == 'cpu' else None).view(
                *x.shape[:-1], -1)
    return fc2(gated(gelu(gate), value))


def _fused_rows_in_blocks(x: Tensor, fc1: nn.Linear, fc2: nn.Linear,
                          block_rows: Optional[int]) -> Tensor:
    rows = x.reshape(-1, x.shape[-1])
    step = block_rows or rows.shape[0]
    if rows.shape[0] <= step:
        out = _fused_rows(rows, fc1, fc2)
    else:
        out = x.new_empty(rows.shape[0], fc2.out_features)
        for start in range(0, rows.shape[0], step):
            out[start:start + step] = _fused_rows(rows[start:start + step],
                                                  fc1, fc2)
    return out.view(*x.shape[:-1], -1)


def _fused_rows(rows: Tensor, fc1: nn.Linear, fc2: nn.Linear) -> Tensor:
    # Separate in-place GELU and product passes measured faster than
    # oneDNN's GELU and multiply epilogues, at every stage.
    hidden = fc2.in_features
    value_weight, gate_weight = fc1.weight.split(hidden)
    value_bias, gate_bias = fc1.bias.split(hidden)
    gate = gelu(linear(rows, gate_weight, gate_bias))
    value = gated(linear(rows, value_weight, value_bias), gate)
    return linear(value, fc2.weight, fc2.bias)
