"""Reading checkpoints without letting them run code.

PyTorch >= 2.6 loads with ``weights_only=True`` by default: the unpickler only
builds tensors, containers and globals on an allowlist. Two kinds of file meet
that wall in an OpenMMLab workflow:

- published timm-style checkpoints, which hold an ``argparse.Namespace``;
- checkpoints written by mmengine's Runner, which hold numpy arrays and
  scalars and mmengine's ``HistoryBuffer``. mmengine 0.10.7 pickles the
  buffer's statistic methods (``HistoryBuffer.mean`` ...), which protocol 2
  writes as ``builtins.getattr(HistoryBuffer, 'mean')``; allowlisting
  ``getattr`` would let any checkpoint call any attribute of an allowed
  object, which is the hole ``weights_only`` closes.

:func:`install` (run on ``import mmparcnet``) therefore

1. makes ``HistoryBuffer`` pickle its data only (its statistic methods are
   class-level and re-registered on unpickling anyway), so the checkpoints
   written while mmparcnet is imported need no ``getattr``;
2. allowlists the few plain-data types such checkpoints hold:
   ``argparse.Namespace``, numpy arrays, dtypes and scalars, ``HistoryBuffer``;
3. routes mmengine's local checkpoint loading (``--resume``, ``load_from``,
   ``tools/test.py``) through :func:`load_checkpoint_file`, which explains a
   refusal instead of dumping the unpickler's error.

Before PyTorch 2.5 (which has ``torch.serialization.safe_globals``) there
is no allowlist to hand to ``weights_only=True`` for one load,
so there the files are read with ``torch.load(pickle_module=...)`` and a
restricted unpickler that builds the same allowlist, plus what PyTorch's own
tensor rebuilding needs, and refuses every other global: the same semantics,
never ``weights_only=False`` for a file nobody named as trusted.

A checkpoint written before (one that still needs ``getattr``) is refused
with a message saying why. If you trust such a file, name it (or a folder
above it) in the environment variable ``MMPARCNET_TRUSTED_CHECKPOINTS``
(paths separated by ``os.pathsep``): it is then loaded with
``weights_only=False`` and a warning. Re-saving it once with
``mmparcnet-convert --resave`` is the lasting fix.
"""
import argparse
import functools
import logging
import os
import os.path as osp
import pickle
from typing import Any, List

import torch

TRUST_ENV = 'MMPARCNET_TRUSTED_CHECKPOINTS'


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model."""


def _numpy_safe_globals() -> List[Any]:
    import numpy as np
    try:
        from numpy import dtypes
    except ImportError:  # numpy < 1.25 pickles dtypes as numpy.dtype alone
        dtypes = None
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    allowed = [np.ndarray, np.dtype]
    allowed += [
        getattr(dtypes, name) for name in dir(dtypes)
        if name.endswith('DType') and isinstance(getattr(dtypes, name), type)
    ] if dtypes is not None else []
    # numpy 2 writes numpy._core.multiarray.*, numpy 1 numpy.core.multiarray.*
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        allowed.append((multiarray._reconstruct, f'{module}._reconstruct'))
        allowed.append((multiarray.scalar, f'{module}.scalar'))
    return allowed


def safe_globals() -> List[Any]:
    """The plain-data globals a trusted-format checkpoint may hold."""
    allowed: List[Any] = [argparse.Namespace]
    allowed += _numpy_safe_globals()
    try:
        from mmengine.logging import HistoryBuffer
        allowed.append(HistoryBuffer)
    except ImportError:
        pass
    return allowed


# What PyTorch's own pickles need to rebuild tensors, besides the storages
# (which torch.load resolves itself): allowed for the restricted unpickler
# that stands in for ``weights_only=True`` where PyTorch cannot allowlist.
_TORCH_REBUILD = ('_rebuild_tensor', '_rebuild_tensor_v2',
                  '_rebuild_tensor_v3', '_rebuild_parameter',
                  '_rebuild_parameter_with_state')


@functools.lru_cache(maxsize=None)
def _restricted_allowlist() -> dict:
    """``{(module, name): object}`` the restricted unpickler may build."""
    import codecs
    import collections
    allowed = {}
    for item in safe_globals():
        obj, name = item if isinstance(
            item, tuple) else (item, f'{item.__module__}.{item.__qualname__}')
        module, _, attr = name.rpartition('.')
        allowed[(module, attr)] = obj
    for name in _TORCH_REBUILD:
        if hasattr(torch._utils, name):
            allowed[('torch._utils', name)] = getattr(torch._utils, name)
    # as in torch's own weights_only allowlist (MMDetection's checkpoints
    # hold a Counter after fine-tuning)
    allowed[('collections', 'OrderedDict')] = collections.OrderedDict
    allowed[('collections', 'Counter')] = collections.Counter
    allowed[('torch', 'Size')] = torch.Size
    allowed[('torch', 'device')] = torch.device
    # numpy arrays pickle their bytes through _codecs.encode (a plain
    # string-to-bytes function)
    allowed[('_codecs', 'encode')] = codecs.encode
    for builtin in (set, frozenset, complex, slice):
        allowed[('builtins', builtin.__name__)] = builtin
    for name in dir(torch):  # dtypes such as torch.float32
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[('torch', name)] = getattr(torch, name)
    return allowed


class _RestrictedUnpickler(pickle._Unpickler):
    """Builds only allowlisted globals: the semantics of ``weights_only=True``
    with :func:`safe_globals`, for PyTorch versions whose ``weights_only``
    unpickler cannot be told about extra globals (before 2.5).

    The pure-Python unpickler, because its BUILD step must be checked too:
    a pickle may only set the state of an instance of an allowlisted class
    (a Namespace's attributes, an array's data), never of a class or
    function itself, which would change it for the whole process.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed = _restricted_allowlist()
        self._instance_types = tuple(
            {v
             for v in self._allowed.values() if isinstance(v, type)}
            | {torch.Tensor})

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise pickle.UnpicklingError(
            f'Unsupported global: GLOBAL {module}.{name} is not an allowed '
            f'global')

    def load_build(self):
        target = self.stack[-2]
        if isinstance(target,
                      type) or not isinstance(target, self._instance_types):
            raise pickle.UnpicklingError(
                f'Unsupported BUILD of a {type(target).__name__}: only '
                f'instances of allowed globals may be given a state')
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` uses of a pickle module."""
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _load_allowlisted(path: str, map_location: Any) -> Any:
    """``torch.load`` that builds only allowlisted globals, on any PyTorch."""
    if hasattr(torch.serialization, 'safe_globals'):  # PyTorch >= 2.5
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(
                path, map_location=map_location, weights_only=True)
    return load_restricted(path, map_location)


def load_restricted(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` through the restricted unpickler (the path taken
    before PyTorch 2.5; callable on any version, which is how it is
    tested)."""
    return torch.load(
        path,
        map_location=map_location,
        weights_only=False,
        pickle_module=_RestrictedPickleModule)


def _is_trusted(path: str) -> bool:
    listed = os.environ.get(TRUST_ENV, '')
    real = osp.realpath(path)
    for entry in filter(None, listed.split(os.pathsep)):
        entry = osp.realpath(osp.expanduser(entry))
        if real == entry or real.startswith(entry.rstrip(os.sep) + os.sep):
            return True
    return False


def load_checkpoint_file(path: str, map_location: Any = 'cpu') -> Any:
    """Load a checkpoint file with ``weights_only=True`` and the allowlist.

    Args:
        path (str): path of the file.
        map_location: as for :func:`torch.load`. Defaults to ``'cpu'``.

    Returns:
        The unpickled object (usually a dict).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a PyTorch checkpoint, is truncated,
            or needs a global that is not on the allowlist (the message names
            it and says how to proceed).
    """
    path = osp.expanduser(str(path))
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint path is not a file: {path}')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint file is empty: {path}')
    try:
        return _load_allowlisted(path, map_location)
    except pickle.UnpicklingError as err:
        message = str(err)
        culprit = next(
            (line.strip()
             for line in message.splitlines() if 'global' in line.lower()),
            None)
        if culprit is None:
            raise CheckpointError(
                f'{path} is not a readable PyTorch checkpoint (corrupted or '
                f'not a checkpoint): {message.splitlines()[0]}') from err
        if _is_trusted(path):
            from mmengine.logging import print_log
            print_log(
                f'{path} needs globals outside the safe allowlist; loading '
                f'it with weights_only=False because {TRUST_ENV} lists it',
                logger='current',
                level=logging.WARNING)
            return torch.load(
                path, map_location=map_location, weights_only=False)
        raise CheckpointError(
            f'refused to load {path}: it needs a Python global that could '
            f'run code ({culprit}). Checkpoints that mmengine wrote '
            f'without mmparcnet imported pickle HistoryBuffer methods through '
            f'builtins.getattr. If you trust this file, add it (or its '
            f'folder) to the environment variable {TRUST_ENV} to load it '
            f'once with weights_only=False, and re-save it with '
            f'`mmparcnet-convert --resave {path} NEW_PATH`.') from err
    except Exception as err:  # the unpickler fails in many ways on bad bytes
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f'{path} is not a readable PyTorch checkpoint (truncated, '
            f'corrupted or not a checkpoint): {first}') from err


def _history_buffer_state(self) -> dict:
    # data only: the statistic methods are class-level, registered again by
    # HistoryBuffer.__setstate__, and pickling them needs builtins.getattr
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _load_from_local(filename, map_location):
    return load_checkpoint_file(filename, map_location)


# mmengine logs the loader's name after its first 10 characters
_load_from_local.__name__ = 'load_from_local'

_installed = False


def install() -> None:
    """Make mmengine's checkpoints safe to write and read on this torch."""
    global _installed
    if _installed:
        return
    if hasattr(torch.serialization, 'add_safe_globals'):  # PyTorch >= 2.4
        torch.serialization.add_safe_globals(safe_globals())
    try:
        from mmengine.logging import HistoryBuffer
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:
        _installed = True
        return
    HistoryBuffer.__getstate__ = _history_buffer_state
    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    _installed = True
