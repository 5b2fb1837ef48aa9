"""oneDNN linear layers for CPU inference, with the residual sum fused.

Why
---
In float32 CPU inference the pointwise layers are most of ParCNetV2's
time, and on the CPUs measured (AMD EPYC, AVX2) oneDNN's GEMM runs about a
fifth faster than MKL's, which ``F.linear`` and ``torch.mm`` call: 124-131
against 95-110 GFLOP/s at the stage-2 shapes of an 800x1216 input and at
2048^3. PyTorch exposes oneDNN's GEMM as ``torch.ops.mkldnn._linear_pointwise``
(the op Inductor emits for CPU linear layers), with elementwise "post-ops"
applied to each output tile while it is still in cache. Of those, the
residual sum pays (``linear_add``: the channel gate unit's ``fc2`` adds the
block's shortcut on the way out); the GELU and product post-ops measured
slower at every stage than separate in-place passes over a cached chunk of
rows, so the callers do those themselves.

When
----
Only where nothing can tell the difference but the clock: float32 on the
CPU with oneDNN enabled, no autograd recording (the op has no backward), no
autocast, not exporting, tracing or compiling (exporters, FLOP counters and
Inductor see the plain ops; Inductor fuses on its own). Everywhere else the
callers take their plain path. Sums may be accumulated in another order
than MKL's: results agree with the plain path to float32 rounding (about
1e-6 relative). ``torch.backends.mkldnn.flags(enabled=False)`` turns the
oneDNN path off.
"""
from typing import Optional

import torch
from torch import Tensor

from .oversized_conv import autocast_dtype, is_compiling, is_exporting


def _fused_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN's ops
        return None
    return op if hasattr(op, 'binary') else None


_LINEAR_POINTWISE = _fused_op()


def fused_linear_applies(*tensors: Tensor) -> bool:
    """Whether the fused oneDNN linear ops may stand in for the plain ones
    on ``tensors`` (inputs and weights): see the module docstring."""
    # first: compilers must not trace the backend queries below
    if _LINEAR_POINTWISE is None or is_compiling():
        return False
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        return False
    if any(t.device.type != 'cpu' or t.dtype != torch.float32
           for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    # all float32 on the CPU by now: autocast is on if it would change that
    autocast = autocast_dtype(tensors[0]) != torch.float32
    return not (autocast or is_exporting() or torch.jit.is_tracing())


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` by oneDNN's GEMM."""
    return _LINEAR_POINTWISE(x, weight, bias, 'none', [], '')


def linear_add(x: Tensor, other: Tensor, weight: Tensor,
               bias: Optional[Tensor]) -> Tensor:
    """``other + (x W^T + b)`` in one pass (``other`` of the output's
    shape)."""
    return _LINEAR_POINTWISE.binary(x, other, weight, bias, 'add')
