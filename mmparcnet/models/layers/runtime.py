"""Deprecated: the fast-path switch moved to :mod:`mmparcnet.models.ops`
(``mmparcnet.set_fast_paths``, ``mmparcnet.fast_paths``).

The switch is now read when a model is built; a built model switches with
``model.set_fast_paths(False)``. This module will be removed in a later
release.
"""
import warnings

from ..ops.context import fast_paths, fast_paths_enabled, set_fast_paths

warnings.warn(
    'mmparcnet.models.layers.runtime is deprecated: use '
    'mmparcnet.set_fast_paths / mmparcnet.fast_paths (read when a model is '
    'built) or model.set_fast_paths(...)',
    DeprecationWarning,
    stacklevel=2)

__all__ = ['fast_paths', 'fast_paths_enabled', 'set_fast_paths']
