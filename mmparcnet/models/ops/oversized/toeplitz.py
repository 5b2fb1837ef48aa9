"""The Toeplitz matrices of a 1-D correlation with a centred kernel.

A "same" correlation of a length-``size`` signal with a centred K-tap
kernel ``k`` (K odd) is a product with the matrix
``T[i, t] = k[t - i + K // 2]`` (zero where no tap exists). Only the
``2 * size - 1`` taps around the centre ever meet the signal; cropped or
zero-padded to those (the *window* ``g``), ``T[i, t] = g[(size - 1 - i) +
t]``: row i is the window's slice that starts at ``size - 1 - i``.
:func:`toeplitz` builds the matrices in one of two forms of that one
construction:

- sliding windows of ``g`` as strided views (``unfold``), last window first
  (one reversing copy: strides cannot run backwards), for concrete sizes;
- a gather of ``g`` by the index ``size - 1 + t - i`` (:func:`gather_index`)
  under tracers that make sizes symbolic: exporters (ONNX has no
  sliding-window view of a dynamic length) and Dynamo (``torch.compile``
  with dynamic shapes specialises a view's length: one graph per size).
  The gather takes whole rows of channels (taps first), then transposes:
  in ONNX Runtime, gathering single elements, or building the matrices
  from repeated slices, costs up to twice as much.

Its adjoint, :func:`toeplitz_adjoint`, takes the matrices' gradient back to
the kernel's: each tap's gradient is the sum over the diagonal it fills.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import unfold_backward


def toeplitz(kernel: Tensor,
             size,
             spans_map: bool = False,
             gather: bool = False,
             index: Optional[Tensor] = None) -> Tensor:
    """(C, size, size) matrices ``T[c, i, t] = kernel[c, t - i + K // 2]``.

    Args:
        kernel (Tensor): (C, K) centred kernels, K odd.
        size (int): the signal's length (symbolic while exporting or
            compiling with dynamic shapes).
        spans_map (bool): ``kernel`` has exactly ``2 * size - 1`` taps (an
            interpolate-mode kernel resized to the map): no window to cut.
            Found out for concrete sizes. Defaults to False.
        gather (bool): build by gathering (for exporters and Dynamo), not
            by strided views. Defaults to False.
        index (Tensor, optional): :func:`gather_index` of ``size`` if made
            already (gathers). Defaults to None.

    Returns:
        Tensor: the matrices, views of the kernel's copy unless gathered.
    """
    if index is None and not gather:
        if not spans_map:  # skip the window's copy where it is the kernel
            spans_map = kernel.shape[1] == 2 * size - 1
        window = kernel if spans_map else _window(kernel, size)
        return window.unfold(1, size, 1).flip(1)
    if index is None:
        index = gather_index(size, kernel.device)
    # one zero more, so that the gather reads 2 * size taps (the last one
    # never read): fewer shape nodes in the exported graph
    window = F.pad(kernel, (0, 1)) if spans_map else _window(kernel, size, 1)
    return window.t()[index].permute(2, 0, 1)


def toeplitz_adjoint(grad: Tensor, taps: int) -> Tensor:
    """The gradient of a (C, K) kernel with ``K = taps``, given that of its
    strided-view matrices ``toeplitz(kernel, size)``, (C, size, size): each
    tap's gradient is the sum over its diagonal, zero for taps that never
    meet the signal. The backward of the views' construction (flip, then
    the windows' adjoint), without an autograd pass."""
    channels, size, _ = grad.shape
    window = unfold_backward(
        grad.flip(1), (channels, 2 * size - 1), 1, size, 1)
    # the window is the kernel's taps around its centre, cropped or
    # zero-padded (_window): pad or crop back (negative padding crops)
    before = taps // 2 - (size - 1)
    after = taps - 1 - taps // 2 - (size - 1)
    if before == after == 0:
        return window
    return F.pad(window, (before, after))


def gather_index(size, device: torch.device) -> Tensor:
    """The (size, size) index ``size - 1 + t - i`` of :func:`toeplitz`'s
    gathered form."""
    steps = torch.arange(size, device=device)
    return steps[None, :] - steps[:, None] + (size - 1)


def _window(kernel: Tensor, size, extra: int = 0) -> Tensor:
    """The ``2 * size - 1`` taps of a centred kernel a length-``size``
    signal meets (and ``extra`` zeros after them), zero beyond the kernel:
    padding and slicing work for a symbolic ``size`` too."""
    centre = kernel.shape[1] // 2
    padded = F.pad(kernel, (size - 1, size - 1 + extra))
    return padded[:, centre:centre + 2 * size - 1 + extra]
