"""Writing OpenMMLab checkpoints from published ParCNetV2 checkpoints.

The output holds only tensors and plain metadata (it loads with
``weights_only=True``): the backbone under ``backbone.``, and for a
classifier its head under ``head.fc.`` (mmpretrain's ``LinearClsHead``) with
the final LayerNorm as ``backbone.norm{last}``. Files are written
atomically (a temporary file in the same folder, then a rename), never
over an existing file unless asked, and read back to check every tensor.
"""
import hashlib
import io
import os
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch

from .loading import (infer_arch, openmmlab_key, select_prefix,
                      unwrap_state_dict)
from .safe_io import CheckpointError, load_checkpoint_file


def to_openmmlab(state: Dict[str, torch.Tensor]) -> 'OrderedDict':
    """Key a trunk state dict (classification or dense layout) for
    OpenMMLab models: ``backbone.*`` and ``head.fc.*``
    (:func:`~.loading.openmmlab_key`)."""
    num_stages = len(infer_arch(state)['depths'])
    return OrderedDict((openmmlab_key(key, num_stages), value)
                       for key, value in state.items())


def save_atomically(obj: Any, dst: str, overwrite: bool = False) -> None:
    """``torch.save`` to a temporary file beside ``dst``, then rename.

    Raises:
        FileExistsError: ``dst`` exists and ``overwrite`` is False.
    """
    _write_atomically(lambda file: torch.save(obj, file), dst, overwrite)


def _write_atomically(write, dst: str, overwrite: bool) -> str:
    """``write(file)`` into a temporary file beside ``dst``, then rename;
    returns the absolute ``dst``."""
    dst = osp.abspath(osp.expanduser(dst))
    if osp.exists(dst) and not overwrite:
        raise FileExistsError(f'{dst} exists; pass overwrite=True '
                              f'(--force on the command line) to replace it')
    folder = osp.dirname(dst)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + osp.basename(dst) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return dst


def _check_written(dst: str, state: Dict[str, torch.Tensor]) -> None:
    written = unwrap_state_dict(load_checkpoint_file(dst), dst)
    if list(written) != list(state):
        raise CheckpointError(f'{dst} was written but its keys differ from '
                              f'what was meant to be saved')
    for key, value in state.items():
        if not torch.equal(written[key], value):
            raise CheckpointError(f'{dst} was written but tensor {key} '
                                  f'reads back different')


def convert_checkpoint(src: str,
                       dst: str,
                       overwrite: bool = False,
                       use_ema: bool = False,
                       prefix: Optional[str] = None) -> Dict[str, Any]:
    """Convert a published or reference checkpoint for OpenMMLab.

    Args:
        src (str): a published classification checkpoint (``.pth.tar``), a
            reference dense-prediction state dict, or an OpenMMLab checkpoint.
        dst (str): the file to write.
        overwrite (bool): replace an existing ``dst``. Defaults to False.
        use_ema (bool): convert ``state_dict_ema``. Defaults to False.
        prefix (str, optional): take only keys under this prefix of ``src``.

    Returns:
        dict: the metadata written (layout, arch, kernel lengths).
    """
    state = unwrap_state_dict(load_checkpoint_file(src), src, use_ema=use_ema)
    state, layout = select_prefix(state, prefix)
    out = to_openmmlab(state)
    arch = infer_arch(state)
    meta = dict(
        mmparcnet=dict(
            source=osp.basename(str(src)),
            source_layout=layout,
            ema=use_ema,
            **arch))
    save_atomically(dict(meta=meta, state_dict=out), dst, overwrite)
    _check_written(dst, out)
    return meta


def resave_checkpoint(src: str,
                      dst: str,
                      overwrite: bool = False,
                      trust_source: bool = False) -> None:
    """Write any checkpoint again so that it loads with ``weights_only``.

    Meant for mmengine checkpoints written without mmparcnet imported, whose
    ``HistoryBuffer`` entries need ``builtins.getattr``. Reading such a file
    runs its pickled code, so ``trust_source`` must be set explicitly.
    """
    save_atomically(_read_checkpoint(src, trust_source), dst, overwrite)
    load_checkpoint_file(dst)  # must now load safely


def _read_checkpoint(src: str, trust_source: bool) -> Dict[str, Any]:
    try:
        return load_checkpoint_file(src)
    except CheckpointError:
        if not trust_source:
            raise
        return torch.load(
            osp.expanduser(src), map_location='cpu', weights_only=False)


PUBLISHED_KEYS = ('meta', 'state_dict')


def publish_checkpoint(src: str,
                       dst: str,
                       overwrite: bool = False,
                       trust_source: bool = False) -> str:
    """Write a training checkpoint for release, as OpenMMLab's
    ``publish_model.py`` does: only its ``meta`` and ``state_dict`` (no
    optimizer, schedulers or message hub), named ``<dst>-<sha256[:8]>.pth``.

    The toolboxes' own ``publish_model.py`` reads the checkpoint with a
    plain ``torch.load``, which PyTorch >= 2.6 refuses for every mmengine
    checkpoint (its message hub's ``HistoryBuffer`` is no allowed global).
    This reads it as mmparcnet reads checkpoints (:mod:`.safe_io`), and
    the file it writes holds tensors and plain data only: a plain
    ``torch.load`` reads it, without mmparcnet imported.

    Args:
        src (str): an mmengine checkpoint (``epoch_36.pth``).
        dst (str): the name to publish under, before the hash
            (``parcnetv2-t_mask-rcnn.pth``).
        overwrite (bool): replace an existing file. Defaults to False.
        trust_source (bool): allow reading ``src`` with
            ``weights_only=False`` where the safe reading refuses it.
            Defaults to False.

    Returns:
        str: the path written.
    """
    checkpoint = _read_checkpoint(src, trust_source)
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise CheckpointError(
            f'{src} has no state_dict: not a training checkpoint of '
            f'mmengine (publish the file itself)')
    published = {k: checkpoint[k] for k in PUBLISHED_KEYS if k in checkpoint}
    buffer = io.BytesIO()
    torch.save(published, buffer)
    data = buffer.getvalue()
    stem = dst[:-len('.pth')] if dst.endswith('.pth') else dst
    final = f'{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    final = _write_atomically(lambda file: file.write(data), final, overwrite)
    written = load_checkpoint_file(final)
    if list(written) != list(published) or list(written['state_dict']) != list(
            published['state_dict']):
        raise CheckpointError(f'{final} was written but reads back '
                              f'different')
    return final
