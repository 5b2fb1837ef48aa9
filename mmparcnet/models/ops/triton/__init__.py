"""GPU kernels in Triton, each registered as a PyTorch operator.

Each module holds one fused operation: its Triton kernels (forward and
backward), its registration with ``torch.library.triton_op`` (so that
autograd and ``torch.compile`` see an operator, not a Python call), and its
reference in PyTorch operators, which CPU tensors run and the tests compare
against (on the CPU through Triton's interpreter, ``TRITON_INTERPRET=1``).

They are fast paths of the registry (:mod:`..registry`) for CUDA tensors,
offered to the layers built while :func:`enabled`: Triton and
``torch.library.triton_op`` (PyTorch >= 2.6) are there, and
``MMPARCNET_TRITON=1`` (or the :func:`kernels` context) asks for them. They
are opt-in until a GPU run has measured them against the paths they would
replace (docs/speed.md).
"""
import contextlib
import importlib.util
import os

import torch

ENV_VARIABLE = 'MMPARCNET_TRITON'


def _importable() -> bool:
    # found, not imported: importing Triton takes a while, and only the
    # kernels' modules need it
    return (importlib.util.find_spec('triton') is not None
            and hasattr(torch.library, 'triton_op')
            and hasattr(torch.library, 'wrap_triton'))


AVAILABLE = _importable()
# Triton's interpreter runs the kernels on CPU tensors (tests)
INTERPRETING = os.environ.get('TRITON_INTERPRET', '0') == '1'
_ENABLED = AVAILABLE and os.environ.get(ENV_VARIABLE, '0') == '1'


def enabled() -> bool:
    """Whether layers built now are offered the Triton kernels."""
    return _ENABLED


@contextlib.contextmanager
def kernels(on: bool = True):
    """``with kernels(): model = ParCNetV2(...)`` offers the Triton kernels
    to the layers built inside (where Triton is there)."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(on) and AVAILABLE
    try:
        yield
    finally:
        _ENABLED = previous
