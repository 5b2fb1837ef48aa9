"""PyTorch calls outside its stable API, and PyTorch bugs worked around.

Each entry says why it is used, and what happens where it is missing. Only
fast implementations call the private operators; the workarounds use
public operators, so that the plain computation runs on every supported
PyTorch with public operators only.

Private or unstable operators:

- ``torch._C._nn.gelu_``: GELU in place. ``F.gelu`` has no in-place form,
  and on fresh intermediates a second map costs page faults on the CPU.
- ``torch.ops.mkldnn._linear_pointwise``: oneDNN's GEMM, the op Inductor
  emits for CPU linear layers (:mod:`.onednn`). Missing in builds without
  oneDNN.
- ``torch.ops.aten.gelu_backward.grad_input``: GELU's derivative written
  into a given tensor (:mod:`.gated_linear`'s blocks of rows, and
  :mod:`.split_projection`'s channel-major planes).
- ``torch.ops.aten.unfold_backward``: the adjoint of ``Tensor.unfold``,
  what autograd runs for it, called directly by the matmul path's backward
  (:func:`.oversized.toeplitz.toeplitz_adjoint`) so that no nested autograd
  pass rebuilds the Toeplitz matrices to differentiate them.

Workarounds (probed once at import, on the CPU in float32):

- ``F.layer_norm`` of a constant vector is not exactly zero on older
  PyTorch (2.1.2: 0.0477 for a constant 16-vector at eps 1e-14), which the
  channel norm's tiny eps blows up: :data:`LAYER_NORM_IS_EXACT`.
- GELU's backward on the CPU is wrong on older PyTorch (2.1.2) when the
  incoming gradient is laid out differently from the input: values of 1e30
  in float32. The spatial gate unit meets that case (GELU on channel-major
  planes, the gradient coming back in another layout), so training diverged
  at the first step: :func:`gelu` (CPU only); :mod:`.split_projection`
  aligns the layouts first there (:data:`GELU_BACKWARD_IS_EXACT`).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import context

_GELU_IN_PLACE = getattr(torch._C._nn, 'gelu_', None)  # looked up once


def gelu_(x: Tensor) -> Tensor:
    """GELU in place (exact, erf-based)."""
    if _GELU_IN_PLACE is not None:
        return _GELU_IN_PLACE(x)
    return x.copy_(F.gelu(x))


def gelu_backward_into(grad: Tensor, x: Tensor, out: Tensor) -> Tensor:
    """``grad * GELU'(x)`` written into ``out``."""
    return torch.ops.aten.gelu_backward.grad_input(grad, x, grad_input=out)


def unfold_backward(grad: Tensor, input_shape: Sequence[int], dim: int,
                    size: int, step: int) -> Tensor:
    """The gradient of ``input.unfold(dim, size, step)`` for an input of
    ``input_shape``, given the windows' gradient ``grad``."""
    return torch.ops.aten.unfold_backward(grad, list(input_shape), dim, size,
                                          step)


def _onednn_linear_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN's ops
        return None
    return op


ONEDNN_LINEAR = _onednn_linear_op()


def onednn_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x W^T + b`` by oneDNN's GEMM (no post-op)."""
    return ONEDNN_LINEAR(x, weight, bias, 'none', [], '')


def _layer_norm_is_exact() -> bool:
    probe = torch.full((1, 64), 3.7, dtype=torch.float32, device='cpu')
    return bool((F.layer_norm(probe, (64, ), eps=1e-14) == 0).all())


LAYER_NORM_IS_EXACT = _layer_norm_is_exact()


def _gelu_derivative(x: Tensor) -> Tensor:
    """GELU'(x) = Phi(x) + x phi(x), in public operators, in float32 at
    least (as the native kernel computes)."""
    wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    cdf = 0.5 * (1 + torch.erf(wide * 0.7071067811865476))
    pdf = torch.exp(-0.5 * wide * wide) * 0.3989422804014327
    return cdf + wide * pdf


def _gelu_backward_is_exact() -> bool:
    # whatever the caller's grad mode, default dtype or device
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.linspace(
            -3, 3, 64, dtype=torch.float32,
            device='cpu').view(8, 8).requires_grad_()
        grad = torch.linspace(
            -1, 1, 64, dtype=torch.float32, device='cpu').view(8, 8).t()
        got, = torch.autograd.grad(F.gelu(x), x, grad)
        want = grad * _gelu_derivative(x.detach())
    return bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5))


GELU_BACKWARD_IS_EXACT = _gelu_backward_is_exact()


class _StrideSafeGELU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return (grad * _gelu_derivative(x)).to(grad.dtype)


def stride_safe_gelu(x: Tensor) -> Tensor:
    """``F.gelu(x)`` with a backward written out in public operators (see
    the module docstring), eagerly; ``F.gelu`` for tracers."""
    if context.tracer():
        return F.gelu(x)
    return _StrideSafeGELU.apply(x)


def _gelu_with_safe_backward(x: Tensor) -> Tensor:
    if x.device.type != 'cpu' or not context.autograd_records(x):
        return F.gelu(x)
    return stride_safe_gelu(x)


# ``F.gelu`` (exact); where its CPU backward is wrong for mismatched layouts
# (see the module docstring), one whose backward is written out in public
# operators wherever autograd records on the CPU. Decided once, at import.
gelu = F.gelu if GELU_BACKWARD_IS_EXACT else _gelu_with_safe_backward
