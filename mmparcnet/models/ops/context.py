"""What the running PyTorch is doing, asked in one place, and the switch.

How a layer is computed depends on two kinds of facts:

- Facts fixed when a module is built: whether the fast paths are on (the
  switch below, or a layer's ``fast_paths`` argument), the oversized
  convolution implementation a config asks for, what this PyTorch build has
  (:mod:`.compat`). The layers read them in ``__init__``
  (:func:`.registry.choose`).
- Facts known only when it runs, because one model is built on the CPU,
  moved to a GPU, trained, evaluated and exported: whether a tracer records
  it, the device, the type autocast computes products in, and whether
  autograd records. :func:`call_context` asks PyTorch these, once per call
  of a fast implementation, as a :class:`Context`. Nothing else in
  mmparcnet asks them.

Tracers
-------
Exporters and compilers must see public PyTorch operators: no custom
autograd functions, private operators or in-place writes into intermediates
they record. :func:`tracer` tells them apart:

- ``'jit'``: ``torch.jit.trace``, which the legacy ONNX exporter and
  operator counters (mmengine's ``FlopAnalyzer``) run;
- ``'dynamo'``: ``torch.compile``, ``torch.export`` and the dynamo ONNX
  exporter;

and :func:`exporting` whether the recording becomes a deployed graph (ONNX,
``torch.export``), which takes the layers' export forms: graphs that resize
the oversized kernels for whatever input size they get. So a plain
``torch.onnx.export`` of any model around the backbone needs no special
call.

The switch
----------
``MMPARCNET_FAST_PATHS=0`` in the environment, :func:`set_fast_paths` or the
:func:`fast_paths` context turn every fast path off for the modules built
while it is off: they then run their plain computation (the paper's
equations in public PyTorch operators), which every fast path is tested
against. A built model switches with ``model.set_fast_paths(False)``.
"""
import contextlib
import os
import threading
from typing import Callable, List, NamedTuple

import torch
from torch import Tensor

ENV_VARIABLE = 'MMPARCNET_FAST_PATHS'


def _from_environment() -> bool:
    value = os.environ.get(ENV_VARIABLE, '1').strip().lower()
    if value in ('1', 'true', 'yes', 'on', ''):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError(f'{ENV_VARIABLE}={value!r}: expected 1 (fast paths, '
                     'the default) or 0 (the plain computation only)')


_FAST_PATHS = _from_environment()


def fast_paths_enabled() -> bool:
    """Whether modules built now take the fast paths."""
    return _FAST_PATHS


def set_fast_paths(enabled: bool) -> None:
    """Turn the fast paths on or off for the modules built from now on."""
    global _FAST_PATHS
    _FAST_PATHS = bool(enabled)


@contextlib.contextmanager
def fast_paths(enabled: bool):
    """``with fast_paths(False): model = ParCNetV2(...)`` builds a model that
    runs the plain computation."""
    previous = fast_paths_enabled()
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(previous)


# -- tracers ------------------------------------------------------------------

# Decided once at import: Dynamo of PyTorch 2.1 cannot trace attribute probes.
if hasattr(getattr(torch, 'compiler', None), 'is_compiling'):
    _dynamo_compiling = torch.compiler.is_compiling
else:  # PyTorch < 2.3
    import torch._dynamo
    _dynamo_compiling = torch._dynamo.is_compiling
_EXPORT_QUERY = getattr(
    getattr(torch, 'compiler', None), 'is_exporting', None)  # PyTorch >= 2.6

EAGER, JIT, DYNAMO = '', 'jit', 'dynamo'


def tracer() -> str:
    """``''`` eagerly, ``'jit'`` under ``torch.jit.trace`` (the legacy ONNX
    exporter), ``'dynamo'`` under ``torch.compile`` or ``torch.export``."""
    if torch.jit.is_tracing():
        return JIT
    if _dynamo_compiling() or (_EXPORT_QUERY is not None and _EXPORT_QUERY()):
        return DYNAMO
    return EAGER


def exporting() -> bool:
    """Whether the model is being exported (ONNX, ``torch.export``)."""
    # the tracer first: it spares eager calls the slower ONNX query
    if torch.jit.is_tracing() and torch.onnx.is_in_onnx_export():
        return True
    return bool(_EXPORT_QUERY is not None and _EXPORT_QUERY())


# -- autograd and autocast ----------------------------------------------------


def autograd_records(*tensors: Tensor) -> bool:
    """Whether autograd records operations on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# torch.get_autocast_dtype(device_type) exists from PyTorch 2.4; before, one
# query per device type. Decided once: Dynamo cannot trace a caught error.
_PER_DEVICE_AUTOCAST_QUERY = hasattr(torch, 'get_autocast_dtype')


def autocast_dtype(x: Tensor) -> torch.dtype:
    """The type autocast would run a matrix product of ``x`` in: its own
    type where autocast is off on its device or leaves it alone (float64,
    integers, meta tensors)."""
    device_type = x.device.type
    if x.dtype not in (torch.float32, torch.float16,
                       torch.bfloat16) or device_type == 'meta':
        return x.dtype
    if _PER_DEVICE_AUTOCAST_QUERY:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    elif device_type == 'cpu' and torch.is_autocast_cpu_enabled():
        return torch.get_autocast_cpu_dtype()
    elif device_type == 'cuda' and torch.is_autocast_enabled():
        return torch.get_autocast_gpu_dtype()
    return x.dtype


def capturing_cuda_graph(x: Tensor) -> bool:
    """Whether a CUDA graph is being captured on ``x``'s device (memory
    allocated now belongs to the graph)."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def onednn_enabled() -> bool:
    """Whether oneDNN may run (``torch.backends.mkldnn.flags`` can turn it
    off at run time)."""
    return bool(torch.backends.mkldnn.is_available()
                and torch.backends.mkldnn.enabled)


class Context(NamedTuple):
    """The facts of one call that decide how it is computed.

    Attributes:
        tracer (str): ``''`` (eager), ``'jit'`` or ``'dynamo'``
            (:func:`tracer`).
        exporting (bool): the recording becomes a deployed graph.
        device (str): the input's device type.
        dtype (torch.dtype): the type products run in: autocast's where it
            applies, the input's otherwise.
        grad (bool): autograd records the call.
    """
    tracer: str
    exporting: bool
    device: str
    dtype: torch.dtype
    grad: bool


def call_context(x: Tensor, *tensors: Tensor, module=None) -> Context:
    """The :class:`Context` of a call on ``x`` with ``tensors`` (kernels,
    weights) or a ``module``'s parameters."""
    grad = torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in tensors) or
        (module is not None and any(p.requires_grad
                                    for p in module.parameters())))
    return Context(tracer(), exporting(), x.device.type, autocast_dtype(x),
                   grad)


# -- sizes shared by a stage's blocks while the legacy exporter traces --------

# While the tracing (legacy) ONNX exporter records a stage, its blocks take
# the map's sizes, and what they compute from them (the resized kernels'
# length, the Toeplitz gather index), from one place: recorded from each
# block's own input they are separate nodes (about 30 a block), which ONNX
# Runtime cannot merge; from one source its optimiser merges what the
# blocks build from them alike (the shapes of their reshapes).
_TRACE = threading.local()  # .stages: a stack of dicts, per thread


def _stages() -> List[dict]:
    if not hasattr(_TRACE, 'stages'):
        _TRACE.stages = []
    return _TRACE.stages


def shared_sizes(**sizes):
    """``with shared_sizes(batch=n, height=h, width=w): stage(x)``: the
    layers inside, all on maps of that size, take their sizes from here
    (:func:`traced_size`) while the legacy exporter traces; otherwise a
    ``nullcontext`` (which ``torch.compile`` traces through on every
    PyTorch version)."""
    if not torch.jit.is_tracing():
        return contextlib.nullcontext()
    return _SharedSizes(sizes)


class _SharedSizes:

    def __init__(self, sizes: dict):
        self.sizes = sizes

    def __enter__(self):
        _stages().append(dict(self.sizes))

    def __exit__(self, *exc_info):
        _stages().pop()


def traced_size(name: str, make: Callable[[], object]):
    """``make()``, or inside :func:`shared_sizes` while tracing, the value
    of that name there (made once, by the first caller)."""
    stages = _stages()
    if not stages or not torch.jit.is_tracing():
        return make()
    shared = stages[-1]
    if name not in shared:
        shared[name] = make()
    return shared[name]
