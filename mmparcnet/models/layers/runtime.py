"""What the running PyTorch is doing, and the one switch for the fast paths.

The layers ask here whether autograd records, whether an exporter, the JIT
tracer or ``torch.compile`` is watching, and in which type autocast would
run a product, so that each answer (and its version differences) lives in
one place.

Fast paths
----------
Everything that computes the same result as the reference formulation by
other means is a fast path: the Toeplitz-matrix and FFT forms of the
oversized convolution chosen by ``oversized_conv_impl='auto'``
(:mod:`.oversized_conv`), oneDNN's fused GEMMs in float32 CPU inference
(:mod:`.fused_linear`), the gated projection that keeps less for the
backward pass (:mod:`.gated_linear`), in-place activations on fresh
intermediates and the memory layout the downsampling convolutions read on
the CPU (``Downsample`` in the backbone). They are on by default.
``set_fast_paths(False)``, the :func:`fast_paths` context, or
``MMPARCNET_FAST_PATHS=0`` in the environment turn them all off: the model
then runs the reference computation with public PyTorch operators only
(``'auto'`` means ``'direct'``), which is what they are tested against.
"""
import contextlib
import os
import threading
from typing import Callable, List

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
                     'the default) or 0 (the reference computation only)')


_FAST_PATHS = _from_environment()


def fast_paths_enabled() -> bool:
    """Whether the fast paths may run (see the module docstring)."""
    return _FAST_PATHS


def set_fast_paths(enabled: bool) -> None:
    """Turn every fast path on or off, for the whole process."""
    global _FAST_PATHS
    _FAST_PATHS = bool(enabled)


@contextlib.contextmanager
def fast_paths(enabled: bool):
    """``with fast_paths(False): ...`` runs the reference computation."""
    previous = fast_paths_enabled()
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(previous)


# Decided once at import: older Dynamo (2.1) cannot trace attribute probes.
if hasattr(getattr(torch, 'compiler', None), 'is_compiling'):
    _compiling = torch.compiler.is_compiling
else:  # PyTorch < 2.3
    import torch._dynamo
    _compiling = torch._dynamo.is_compiling
_EXPORT_QUERY = getattr(
    getattr(torch, 'compiler', None), 'is_exporting', None)  # PyTorch >= 2.6


def is_compiling() -> bool:
    """Whether ``torch.compile`` (Dynamo) is tracing the model."""
    return bool(_compiling())


def is_exporting() -> bool:
    """Whether the model is being exported (ONNX, torch.export)."""
    # the legacy ONNX exporter traces; asking the tracer first spares every
    # eager call the slower ONNX query (a few per cent at 224x224, batch 1)
    if torch.jit.is_tracing() and torch.onnx.is_in_onnx_export():
        return True
    return bool(_EXPORT_QUERY is not None and _EXPORT_QUERY())


def plain_ops_needed() -> bool:
    """Whether an exporter, the JIT tracer or ``torch.compile`` must see
    plain operators (no custom autograd functions or private ops): they
    record, partition and fuse on their own."""
    return is_compiling() or is_exporting() or torch.jit.is_tracing()


def autograd_records(*tensors: Tensor) -> bool:
    """Whether autograd records operations on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# torch.get_autocast_dtype(device_type) exists from PyTorch 2.4; before,
# one query per device type. Decided once: Dynamo cannot trace a caught
# TypeError.
_PER_DEVICE_AUTOCAST_QUERY = hasattr(torch, 'get_autocast_dtype')


def autocast_dtype(x: Tensor) -> torch.dtype:
    """The type autocast would run a matrix product of ``x`` in: its own
    type where autocast is off on its device or leaves it alone (float64,
    integers)."""
    device_type = x.device.type
    if x.dtype not in (torch.float32, torch.float16,
                       torch.bfloat16) or device_type == 'meta':
        return x.dtype  # (meta tensors, shapes only, have no autocast)
    if _PER_DEVICE_AUTOCAST_QUERY:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    elif device_type == 'cpu' and torch.is_autocast_cpu_enabled():
        return torch.get_autocast_cpu_dtype()
    elif device_type == 'cuda' and torch.is_autocast_enabled():
        return torch.get_autocast_gpu_dtype()
    return x.dtype


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
