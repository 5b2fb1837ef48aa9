"""Linear layers with their elementwise epilogue fused, for CPU inference.

Why
---
In the channel gate unit, ``fc2((x W_v^T + b_v) * GELU(x W_g^T + b_g)) +
shortcut``, the GEMMs run near the CPU's peak, but eagerly every bias,
GELU, product and residual sum is another pass over a large fresh
intermediate (at 800x1216, stage 0's is 78 MB per block: first touches of
fresh memory cost page faults as much as the arithmetic). oneDNN applies
such operations to each GEMM tile while it is still in cache ("post-ops");
PyTorch exposes that as ``torch.ops.mkldnn._linear_pointwise`` (the op
Inductor itself emits for CPU linear fusions). Measured on the stage-0
shape of an 800x1216 input (60800 x 64, 2 cores): 74 instead of 152 ms for
the whole channel gate unit.

When
----
Only where nothing can tell the difference but the clock: float32 on the
CPU with oneDNN enabled, no autograd recording (the op has no backward), no
autocast, not exporting, tracing or compiling (exporters, FLOP counters and
Inductor see the plain ops; Inductor fuses on its own). Everywhere else the
callers take their plain path. The GEMM is oneDNN's instead of MKL's, so
sums are accumulated in another order: results agree with the plain path
to float32 rounding (about 1e-6 relative).
``torch.backends.mkldnn.flags(enabled=False)`` turns the fusion off.
"""
from typing import Optional

import torch
from torch import Tensor

from .oversized_conv import is_exporting


def _fused_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN's ops
        return None
    return op if hasattr(op, 'binary') else None


_LINEAR_POINTWISE = _fused_op()


def _compiling() -> bool:
    compiler = getattr(torch, 'compiler', None)
    compiling = getattr(compiler, 'is_compiling', None)
    return bool(compiling and compiling())


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled('cpu')
    except TypeError:  # PyTorch < 2.4
        return torch.is_autocast_cpu_enabled()


def fused_linear_applies(*tensors: Tensor) -> bool:
    """Whether the fused oneDNN linear ops may stand in for the plain ones
    on ``tensors`` (inputs and weights): see the module docstring."""
    # first: compilers must not trace the backend queries below
    if _LINEAR_POINTWISE is None or _compiling():
        return False
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        return False
    if any(t.device.type != 'cpu' or t.dtype != torch.float32
           for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return not (_cpu_autocast() or is_exporting() or torch.jit.is_tracing())


def linear_gelu(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``GELU(x W^T + b)`` (exact, erf-based GELU) in one pass."""
    return _LINEAR_POINTWISE(x, weight, bias, 'gelu', [], 'none')


def linear_mul(x: Tensor, other: Tensor, weight: Tensor,
               bias: Optional[Tensor]) -> Tensor:
    """``(x W^T + b) * other`` in one pass (``other`` of the output's
    shape)."""
    return _LINEAR_POINTWISE.binary(x, other, weight, bias, 'mul')


def linear_add(x: Tensor, other: Tensor, weight: Tensor,
               bias: Optional[Tensor]) -> Tensor:
    """``other + (x W^T + b)`` in one pass (``other`` of the output's
    shape)."""
    return _LINEAR_POINTWISE.binary(x, other, weight, bias, 'add')

