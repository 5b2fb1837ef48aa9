"""oneDNN's linear layer for float32 CPU inference.

Why
---
In float32 CPU inference the pointwise layers are most of ParCNetV2's time, and
on the CPUs measured (AMD EPYC, AVX2) oneDNN's GEMM runs about a fifth faster
than MKL's, which ``F.linear`` and ``torch.mm`` call (docs/speed.md). PyTorch
exposes oneDNN's GEMM as ``torch.ops.mkldnn._linear_pointwise`` (the op
Inductor emits for CPU linear layers; :mod:`.torch_ops`). Its elementwise
"post-ops" (GELU, product) measured slower at every stage than separate
in-place passes over a cached block of rows, so the callers do those themselves
(:mod:`.pointwise`).

When
----
Only where nothing can tell the difference but the clock: float32 on the
CPU with oneDNN enabled, no autograd recording (the op has no backward), no
autocast, not exporting, tracing or compiling (exporters, FLOP counters and
Inductor see the plain ops; Inductor fuses on its own). Everywhere else the
callers take their plain path. Sums may be accumulated in another order
than MKL's: results agree with the plain path to float32 rounding (about
1e-6 relative). ``torch.backends.mkldnn.flags(enabled=False)`` turns the
oneDNN path off; so does the fast-path switch (:mod:`.runtime`).
"""
from typing import Optional

import torch
from torch import Tensor

from .runtime import (autocast_dtype, autograd_records, fast_paths_enabled,
                      plain_ops_needed)
from .torch_ops import ONEDNN_LINEAR, onednn_linear


def fused_linear_applies(*tensors: Tensor) -> bool:
    """Whether the fused oneDNN linear ops may stand in for the plain ones
    on ``tensors`` (inputs and weights): see the module docstring."""
    # first: compilers must not trace the backend queries below
    if plain_ops_needed() or not fast_paths_enabled() or \
            ONEDNN_LINEAR is None:
        return False
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        return False
    if any(t.device.type != 'cpu' or t.dtype != torch.float32
           for t in tensors):
        return False
    # all float32 on the CPU by now: autocast is on if it would change that
    return not (autograd_records(*tensors)
                or autocast_dtype(tensors[0]) != torch.float32)


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` by oneDNN's GEMM."""
    return onednn_linear(x, weight, bias)
