"""How each layer is computed: every fast implementation and the rule that
picks it, in one table.

The layers (:mod:`mmparcnet.models.layers`) hold the architecture: the
parameters, and a ``plain_forward`` that reads as the paper's equation in
public PyTorch operators. When a layer is built it asks :func:`choose` (the
oversized convolution: :func:`choose_oversized_conv`) how to compute, and
its ``forward`` calls what it got:

- with the fast paths off (:mod:`.context`, or the layer's ``fast_paths``
  argument): the plain computation itself, no dispatch at all, except the
  forms exporters require (:attr:`Implementation.required`);
- on: a :class:`Dispatch` over the operation's implementations in
  :data:`OPERATIONS`, which on each call takes the first whose rule holds for
  the call's :class:`.Context` (asked once), the plain computation where
  none does.

The rules look only at the context and shapes, so a choice is deterministic.
Each implementation is tested against the layer's plain forward
(``tests/models/ops/``).

Adding a kernel: write it as ``fn(layer, ctx, x)`` in a module of this
package, add a line with its rule to :data:`OPERATIONS`, and a test that
compares it with the layer's ``plain_forward``.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from . import context, local_conv, onednn
from . import triton as triton_kernels
from .downsampling import downsample_from_planes
from .gate_units import (channel_exported, channel_in_place,
                         channel_keeping_less, channel_onednn, channel_triton,
                         spatial_exported, spatial_planes,
                         spatial_planes_in_place, spatial_planes_keeping_less,
                         spatial_planes_onednn, spatial_planes_triton)
from .oversized import IMPLEMENTATIONS, KERNEL_MODES, correlate, fit_kernels
from .oversized.direct import direct
from .oversized.fft import fft
from .oversized.matmul import exported_matmul, matmul
from .stage import stage_triton


class Implementation(NamedTuple):
    """One way to compute an operation.

    Attributes:
        name (str): what it is, for people.
        run (Callable): ``run(layer, ctx, *inputs)``.
        applies (Callable): the rule, ``applies(ctx, layer, *inputs)``.
        required (bool): taken also with the fast paths off (a form an
            exporter needs). Defaults to False.
        offered (Callable, optional): asked when a layer is built, whether
            this implementation is on offer at all (opt-in kernels). None:
            always. Defaults to None.
    """
    name: str
    run: Callable
    applies: Callable
    required: bool = False
    offered: Optional[Callable[[], bool]] = None


# -- rules --------------------------------------------------------------------


def always(ctx, *_) -> bool:
    return True


def exporting(ctx, *_) -> bool:
    """An exporter records the graph a deployment runs."""
    return ctx.exporting


def eager_inference(ctx, *_) -> bool:
    """No tracer and no autograd: custom kernels, private operators and
    in-place writes into fresh intermediates may run."""
    return not ctx.tracer and not ctx.grad


def eager_training(ctx, *_) -> bool:
    """No tracer, autograd records: custom autograd functions may run."""
    return not ctx.tracer and ctx.grad


def onednn_inference(ctx, *_) -> bool:
    """Eager float32 CPU inference with oneDNN on (:mod:`.onednn`)."""
    return (eager_inference(ctx) and ctx.device == 'cpu'
            and ctx.dtype == torch.float32 and onednn.AVAILABLE
            and context.onednn_enabled())


# the types the Triton kernels take: they compute in float32, so a float64
# model keeps its plain paths
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def eager_cuda(ctx, *_) -> bool:
    """Eager on a CUDA device, in a type of :data:`TRITON_DTYPES`."""
    return (not ctx.tracer and ctx.device == 'cuda'
            and ctx.dtype in TRITON_DTYPES)


def eager_cuda_unchecked(ctx, stage, x: Tensor) -> bool:
    """Eager on a CUDA device, the blocks not each checkpointed (which a
    stage-wide computation would undo)."""
    return eager_cuda(ctx) and not (stage.with_cp and x.requires_grad)


# The most input positions (batch x height x width) whose downsampling reads
# NCHW planes on the CPU (:mod:`.downsampling`; docs/speed.md).
PLANES_MAX_POSITIONS = 1024


def small_cpu_map(ctx, layer, x: Tensor) -> bool:
    batch, height, width, _ = x.shape
    return (not ctx.tracer and ctx.device == 'cpu'
            and batch * height * width <= PLANES_MAX_POSITIONS)


# -- the table ----------------------------------------------------------------

# Per operation, tried in order; the layer's plain forward where none applies
# (under tracers that do not export: torch.compile, FLOP counters).
OPERATIONS: Dict[str, Tuple[Implementation, ...]] = {
    'spatial_bgu': (
        Implementation('one product per half, NCHW maps', spatial_exported,
                       exporting),
        Implementation('channel-major planes, oneDNN GEMM, in place',
                       spatial_planes_onednn, onednn_inference),
        Implementation(
            'channel-major planes, Triton gated sum',
            spatial_planes_triton,
            eager_cuda,
            offered=triton_kernels.enabled),
        Implementation('channel-major planes, in place',
                       spatial_planes_in_place, eager_inference),
        Implementation('channel-major planes, gated projection keeping less',
                       spatial_planes_keeping_less, eager_training),
        Implementation('channel-major planes', spatial_planes, always),
    ),
    'channel_bgu': (
        Implementation('one product per half', channel_exported, exporting),
        Implementation('oneDNN GEMMs in blocks of rows, in place',
                       channel_onednn, onednn_inference),
        Implementation(
            'Triton gated GELU',
            channel_triton,
            eager_cuda,
            offered=triton_kernels.enabled),
        Implementation('in place', channel_in_place, eager_inference),
        Implementation('gated projection keeping less', channel_keeping_less,
                       eager_training),
    ),
    'stage': (Implementation(
        'Triton residual sums and channel norms',
        stage_triton,
        eager_cuda_unchecked,
        offered=triton_kernels.enabled), ),
    'local_conv': (Implementation(
        'channels-last memory (cuDNN)',
        local_conv.channels_last_local,
        eager_cuda,
        offered=local_conv.enabled), ),
    'downsample': (Implementation('from contiguous NCHW planes',
                                  downsample_from_planes, small_cpu_map), ),
}


def choose(operation: str,
           plain: Callable,
           fast_paths: Optional[bool] = None) -> Callable:
    """How a layer computes ``operation``: ``plain`` (its plain forward,
    ``plain(layer, *inputs)``) where no implementation may run, else a
    :class:`Dispatch`.

    Args:
        operation (str): a key of :data:`OPERATIONS`.
        plain (Callable): the layer class's plain forward.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch (:mod:`.context`). Defaults to
            None.
    """
    fast = context.fast_paths_enabled() if fast_paths is None else fast_paths
    candidates = tuple(impl for impl in OPERATIONS[operation] if (
        fast or impl.required) and (impl.offered is None or impl.offered()))
    if not candidates:
        return plain
    return Dispatch(operation, plain, fast, candidates)


class Dispatch:
    """``dispatch(layer, *inputs)``: the first implementation whose rule
    holds for the call, else the plain forward."""

    def __init__(self, operation: str, plain: Callable, fast: bool,
                 candidates: Tuple[Implementation, ...]):
        self.operation, self.plain, self.fast = operation, plain, fast
        self.candidates = candidates

    def __call__(self, layer, *inputs):
        ctx = context.call_context(inputs[0], module=layer)
        for impl in self.candidates:
            if impl.applies(ctx, layer, *inputs):
                return impl.run(layer, ctx, *inputs)
        return self.plain(layer, *inputs)

    def select(self, layer, *inputs) -> str:
        """The name of the implementation a call would take."""
        ctx = context.call_context(inputs[0], module=layer)
        return next(
            (impl.name
             for impl in self.candidates if impl.applies(ctx, layer, *inputs)),
            'plain')

    def __deepcopy__(self, memo):  # it holds no state: share it
        return self

    def __reduce__(self):  # pickled by what it was chosen from
        return choose, (self.operation, self.plain, self.fast)

    def __repr__(self) -> str:
        return (f'Dispatch({self.operation!r}, '
                f'{[impl.name for impl in self.candidates]})')


# -- the oversized convolution ------------------------------------------------

# The fastest implementation per device type and pass ('forward' alone, or
# 'training': forward and backward), as (impl, min_taps, min_elements) rules
# tried in order; 'direct' where none applies. ``taps`` is the number of
# kernel taps that meet the map (2H-1 + 2W-1 in interpolate mode): the direct
# path costs that many multiply-adds per output element (about three times
# that with the backward), the matmul path H + W in GEMMs. Unknown device
# types use the CPU rules. The measurements behind the thresholds (on the
# CPU the GEMMs win from about 40 taps; on an H200 from about 200, the FFT
# at no stage shape): docs/speed.md, "Where the code's choices come from".
FAST_PATHS = {
    ('cpu', 'forward'): [('matmul', 40, 0)],
    ('cpu', 'training'): [('matmul', 40, 0)],
    ('cuda', 'forward'): [('matmul', 200, 0)],
    ('cuda', 'training'): [('matmul', 200, 0)],
}

OVERSIZED_CONV = {'direct': direct, 'matmul': matmul, 'fft': fft}


def choose_impl(x_shape,
                taps_h: int,
                taps_w: int,
                device_type: str,
                training: bool = False) -> str:
    """``'direct'``, ``'matmul'`` or ``'fft'`` for a map shape (N, C, H, W)
    with kernels of ``taps_h`` and ``taps_w`` taps on a device type.

    Deterministic: taps per output element and the number of elements
    against the rules of the device type and pass (:data:`FAST_PATHS`);
    ``training`` means gradients are needed.
    """
    device_type = device_type if (device_type, 'forward') in \
        FAST_PATHS else 'cpu'
    rules = FAST_PATHS[(device_type, 'training' if training else 'forward')]
    batch, channels, height, width = x_shape
    taps = min(taps_h, 2 * height - 1) + min(taps_w, 2 * width - 1)
    elements = batch * channels * height * width
    for impl, min_taps, min_elements in rules:
        if taps >= min_taps and elements >= min_elements:
            return impl
    return 'direct'


class OversizedConvChoice:
    """``choice(x, k_h, k_w, mode)``: the oversized convolution of (N, C, H,
    W) maps with the stored kernels, computed as ``impl`` asks:

    - ``'auto'``: exporting, the exported matmul form (the only one whose
      graph resizes the kernels for any input); otherwise with the fast
      paths on, the implementation :func:`choose_impl` picks for the shape,
      with them off the plain direct computation;
    - ``'direct'``: the direct path (with the fast paths off, plain);
    - ``'matmul'``: the Toeplitz products (exporting, the exported form);
    - ``'fft'``: the FFT.
    """

    def __init__(self, impl: str, fast: bool):
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f'unknown oversized convolution implementation '
                             f'{impl!r}; expected one of {IMPLEMENTATIONS}')
        self.impl, self.fast = impl, fast

    def __call__(self, x: Tensor, k_h: Tensor, k_w: Tensor,
                 mode: str) -> Tensor:
        ctx = context.call_context(x, k_h, k_w)
        if ctx.exporting and self.impl in ('auto', 'matmul'):
            return exported_matmul(x, k_h, k_w, mode)
        k_h, k_w = fit_kernels(k_h, k_w, x.shape[-2], x.shape[-1], mode)
        impl = self.impl
        if impl in ('auto', 'direct') and not self.fast:
            return correlate(x, k_h, k_w)
        if impl == 'auto':
            impl = choose_impl(x.shape, k_h.shape[-2], k_w.shape[-1],
                               ctx.device, ctx.grad)
        return OVERSIZED_CONV[impl](x, k_h, k_w, ctx)

    def select(self, x: Tensor, k_h: Tensor, k_w: Tensor, mode: str) -> str:
        """The implementation a call would take."""
        ctx = context.call_context(x, k_h, k_w)
        if ctx.exporting and self.impl in ('auto', 'matmul'):
            return 'exported matmul'
        if self.impl in ('auto', 'direct') and not self.fast:
            return 'plain'
        if self.impl != 'auto':
            return self.impl
        k_h, k_w = fit_kernels(k_h, k_w, x.shape[-2], x.shape[-1], mode)
        return choose_impl(x.shape, k_h.shape[-2], k_w.shape[-1], ctx.device,
                           ctx.grad)

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return OversizedConvChoice, (self.impl, self.fast)

    def __repr__(self) -> str:
        return f'OversizedConvChoice({self.impl!r}, fast={self.fast})'


def choose_oversized_conv(
        impl: str = 'auto',
        fast_paths: Optional[bool] = None) -> OversizedConvChoice:
    """How an oversized convolution layer computes, for the implementation
    a config asks for (:class:`OversizedConvChoice`)."""
    fast = context.fast_paths_enabled() if fast_paths is None else fast_paths
    return OversizedConvChoice(impl, fast)


def apply_oversized_conv(x: Tensor,
                         k_h: Tensor,
                         k_w: Tensor,
                         mode: str = 'interpolate',
                         impl: str = 'auto') -> Tensor:
    """Apply ParCNetV2's oversized depthwise convolution (the math:
    :mod:`.oversized`), with the process-wide fast-path switch.

    Args:
        x (Tensor): input of shape (N, C, H, W), any memory format.
        k_h (Tensor): stored vertical kernel, shape (C, 1, K_h, 1).
        k_w (Tensor): stored horizontal kernel, shape (C, 1, 1, K_w).
        mode (str): ``'interpolate'`` or ``'fixed'``. Defaults to
            ``'interpolate'``.
        impl (str): ``'direct'``, ``'fft'``, ``'matmul'`` or ``'auto'``
            (:class:`OversizedConvChoice`). Defaults to ``'auto'``.

    Returns:
        Tensor: output of shape (N, C, H, W). Its memory layout depends on
        the path (channel-major for ``'matmul'``).
    """
    if mode not in KERNEL_MODES:
        raise ValueError(f'unknown oversized kernel mode {mode!r}; '
                         f'expected one of {KERNEL_MODES}')
    return choose_oversized_conv(impl)(x, k_h, k_w, mode)
