"""oneDNN's GEMM, for float32 CPU inference.

In float32 CPU inference the pointwise layers are most of ParCNetV2's time,
and on the CPUs measured (AMD EPYC, AVX2) oneDNN's GEMM runs about a fifth
faster than MKL's, which ``F.linear`` and ``torch.mm`` call (docs/speed.md).
PyTorch exposes oneDNN's GEMM as ``torch.ops.mkldnn._linear_pointwise``
(:mod:`.compat`). Its elementwise "post-ops" (GELU, product) measured slower
at every stage than separate in-place passes over a cached block of rows,
so the callers do those themselves (:mod:`.gate_units`).

The op has no backward and no autocast rule; the registry takes it only
where nothing but the clock can tell: float32 on the CPU with oneDNN
enabled, no autograd recording, no autocast, no tracer
(:func:`.registry.onednn_inference`). Sums may be accumulated in another
order than MKL's: results agree with the plain path to float32 rounding
(about 1e-6 relative).
"""
from typing import Optional

from torch import Tensor

from .compat import ONEDNN_LINEAR, onednn_linear

AVAILABLE = ONEDNN_LINEAR is not None


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` by oneDNN's GEMM."""
    return onednn_linear(x, weight, bias)
