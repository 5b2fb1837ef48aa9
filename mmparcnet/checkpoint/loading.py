"""Published ParCNetV2 checkpoints into this package's backbone.

Three layouts are recognised (docs/checkpoints.md):

- ``'classification'``: the published timm-style classifier (``state_dict``,
  ``state_dict_ema`` or ``model`` inside, perhaps ``module.`` prefixes): the
  trunk, the final LayerNorm ``norm.*`` and the classifier ``head.*``;
- ``'dense'``: the reference dense-prediction backbone, the trunk plus the
  output norms ``norm0..norm3`` (also what this backbone's own state dict is);
- ``'openmmlab'``: a whole-model OpenMMLab checkpoint, backbone keys under
  ``backbone.`` (or under the ``prefix`` given).

All foreign key names are mapped by :func:`openmmlab_key`, the one place
that knows them (for loading here and for :mod:`.convert`). Oversized
kernels stored at another length are resized by the backbone's own
``resize_stored_kernels``; any other shape mismatch is an error that names
the tensor; missing and unexpected keys are logged by name.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from mmengine.logging import print_log
from torch import Tensor, nn

from .safe_io import CheckpointError, load_checkpoint_file

_WRAPPER_KEYS = ('state_dict', 'model', 'module')
_STAGE_NORM_KEY = re.compile(r'^norm(\d+)\.(weight|bias)$')
CLASSIFIER_NORM = ('norm.weight', 'norm.bias')
CLASSIFIER_HEAD = ('head.weight', 'head.bias')


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(message, logger='current', level=level)


def unwrap_state_dict(checkpoint,
                      source: str = 'checkpoint',
                      use_ema: bool = False) -> Dict[str, Tensor]:
    """The tensor dict inside a loaded checkpoint, ``module.`` prefixes gone.

    Args:
        checkpoint: what :func:`load_checkpoint_file` returned.
        source (str): a name for messages. Defaults to 'checkpoint'.
        use_ema (bool): take ``state_dict_ema`` where there is one.
            Defaults to False.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{source} holds a {type(checkpoint).__name__}'
                              f', not a dict of tensors')
    state = checkpoint
    if use_ema:
        if not isinstance(checkpoint.get('state_dict_ema'), dict):
            raise CheckpointError(f'{source} has no state_dict_ema')
        state = checkpoint['state_dict_ema']
    else:
        for key in _WRAPPER_KEYS:
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    tensors = OrderedDict()
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        if key.startswith('module.'):
            key = key[len('module.'):]
        tensors[key] = value
    if not tensors:
        raise CheckpointError(f'{source} holds no tensors (keys: '
                              f'{sorted(checkpoint)[:8]})')
    return tensors


def detect_layout(state: Dict[str, Tensor]) -> str:
    """``'classification'``, ``'dense'`` or ``'openmmlab'`` (see the module
    docstring)."""
    if any(key.startswith('backbone.') for key in state):
        return 'openmmlab'
    if not any(
            key.startswith(('downsample_layers.', 'stages.'))
            for key in state):
        raise CheckpointError(
            'not a ParCNetV2 checkpoint: no downsample_layers.* or stages.* '
            f'keys (first keys: {list(state)[:5]})')
    if any(key in state for key in CLASSIFIER_NORM + CLASSIFIER_HEAD):
        return 'classification'
    return 'dense'


def infer_arch(state: Dict[str, Tensor]) -> Dict[str, List[int]]:
    """Depths, dims and stored kernel lengths of a trunk state dict."""
    depths, dims, lengths = [], [], []
    stage = 0
    while f'downsample_layers.{stage}.conv.weight' in state:
        dims.append(state[f'downsample_layers.{stage}.conv.weight'].shape[0])
        blocks = {
            int(key.split('.')[2])
            for key in state if key.startswith(f'stages.{stage}.')
        }
        depths.append(len(blocks))
        kernel = state.get(f'stages.{stage}.0.token_mixer.dwconv1.conv_h'
                           '.weight')
        lengths.append(int(kernel.shape[2]) if kernel is not None else 0)
        stage += 1
    return dict(depths=depths, dims=dims, kernel_lengths=lengths)


def select_prefix(state: Dict[str, Tensor],
                  prefix: Optional[str]) -> Tuple[Dict[str, Tensor], str]:
    """Keep the keys under ``prefix`` and name the layout.

    Without a prefix, a whole-model OpenMMLab checkpoint gives its
    ``backbone.`` keys and any other checkpoint is taken whole.
    """
    if prefix is None:
        layout = detect_layout(state)
        if layout != 'openmmlab':
            return state, layout
        prefix = 'backbone.'
    if not prefix:
        return state, detect_layout(state)
    selected = OrderedDict((key[len(prefix):], value)
                           for key, value in state.items()
                           if key.startswith(prefix))
    roots = sorted({key.split('.')[0] for key in state})
    if not selected:
        raise CheckpointError(f'no key starts with prefix {prefix!r}; the '
                              f'checkpoint\'s top-level names are {roots}')
    detect_layout(selected)  # raises if it is no ParCNetV2 trunk
    others = [root for root in roots if root != prefix.split('.')[0]]
    if others:
        _log(f'taking the keys under {prefix!r}; not for the backbone: '
             f'{", ".join(others)}')
    return selected, 'openmmlab'


def openmmlab_key(key: str, num_stages: int) -> str:
    """The name a published or reference checkpoint key takes in an
    OpenMMLab model: trunk keys and output norms go under ``backbone.``,
    the classifier's final LayerNorm ``norm.*`` becomes the last output
    norm (``backbone.norm{last}.*``, the pooled LayerNorm of
    ``gap_before_final_norm``) and the classifier ``head.*`` becomes
    mmpretrain's ``head.fc.*``. The one place that maps these names, for
    loading and for :mod:`.convert` alike."""
    if key in CLASSIFIER_HEAD:
        return 'head.fc.' + key.split('.', 1)[1]
    if key in CLASSIFIER_NORM:
        return f'backbone.norm{num_stages - 1}.' + key.split('.', 1)[1]
    return 'backbone.' + key


def to_backbone_keys(
    state: Dict[str, Tensor],
    model: nn.Module,
    target: Optional[Dict[str, Tensor]] = None
) -> Tuple[Dict[str, Tensor], List[str], List[str]]:
    """Map a trunk state dict to ``model``'s key names (:func:`openmmlab_key`
    without the ``backbone.`` prefix).

    The classifier's final LayerNorm (``norm.*``) becomes the last output
    norm when ``model`` pools before its final norm (classification use);
    a dense backbone has scale-only channel norms there instead, so the
    LayerNorm is set aside, as is the classifier ``head.*``. An output norm
    whose kind (LayerNorm with bias, or scale-only channel norm) differs
    from the model's is set aside too.

    Returns:
        The mapped dict; the names set aside by design (a classifier's head
        and pooled LayerNorm, which a dense backbone has no place for), with
        no reason, and the names set aside for a mismatch, with the reason.
    """
    target = model.state_dict() if target is None else target
    gap = getattr(model, 'gap_before_final_norm', False)
    num_stages = getattr(model, 'num_stages', 4)
    mapped, by_design, set_aside = OrderedDict(), [], []
    for key, value in state.items():
        name = openmmlab_key(key, num_stages)
        if not name.startswith('backbone.'):
            by_design.append(key)
            continue
        name = name[len('backbone.'):]
        if key in CLASSIFIER_NORM and not (gap and name in target):
            by_design.append(key)
            continue
        mapped[name] = value
    # an output norm with a bias is a LayerNorm (pooled output), one without
    # is a channel norm (dense output): never load one kind into the other
    for match in filter(None, map(_STAGE_NORM_KEY.match, list(mapped))):
        index = match.group(1)
        source_is_layernorm = f'norm{index}.bias' in mapped
        target_is_layernorm = f'norm{index}.bias' in target
        if (f'norm{index}.weight' in target
                and source_is_layernorm != target_is_layernorm):
            key = match.group(0)
            mapped.pop(key)
            if source_is_layernorm:
                # a classifier's pooled norm (an OpenMMLab classifier)
                by_design.append(key)
            else:
                set_aside.append(f'{key} (a channel norm, not the kind of '
                                 f'this backbone\'s pooled norm{index})')
    return mapped, by_design, set_aside


def check_shapes(state: Dict[str, Tensor],
                 model: nn.Module,
                 target: Optional[Dict[str, Tensor]] = None) -> None:
    """Raise :class:`CheckpointError` naming the first tensor whose shape
    differs from ``model``'s (after the oversized kernels were resized)."""
    target = model.state_dict() if target is None else target
    for key, value in state.items():
        if key not in target or target[key].shape == value.shape:
            continue
        arch = infer_arch(state)
        raise CheckpointError(
            f'checkpoint tensor {key} has shape {tuple(value.shape)}, the '
            f'model expects {tuple(target[key].shape)}: the checkpoint is '
            f'for another arch (depths={arch["depths"]}, dims='
            f'{arch["dims"]}) than the model (depths='
            f'{getattr(model, "depths", "?")}, dims='
            f'{getattr(model, "dims", "?")})')


def load_state_into(model: nn.Module,
                    state: Dict[str, Tensor],
                    source: str = 'checkpoint',
                    layout: str = '') -> None:
    """Map, fit and load ``state`` into ``model``; report what did not fit.

    Oversized kernels stored at another length are resized by the model's
    own ``resize_stored_kernels`` (its load-state-dict pre-hook, here called
    first so that any other mismatch is reported by name before loading).
    """
    target = model.state_dict()
    mapped, by_design, set_aside = to_backbone_keys(state, model, target)
    if hasattr(model, 'resize_stored_kernels'):
        model.resize_stored_kernels(mapped)
    check_shapes(mapped, model, target)
    unexpected = [key for key in mapped if key not in target]
    missing = [key for key in target if key not in mapped]
    model.load_state_dict(
        OrderedDict((k, v) for k, v in mapped.items() if k in target),
        strict=False)
    _log(f'loaded {len(mapped) - len(unexpected)} tensors into '
         f'{type(model).__name__} from {source}' +
         (f' ({layout} layout)' if layout else ''))
    if by_design:
        # the hand-over from pretraining to fine-tuning: the reference
        # loads classifiers non-strictly the same way
        fresh = [key for key in missing if _STAGE_NORM_KEY.match(key)]
        missing = [key for key in missing if key not in fresh]
        what = ('head' if getattr(model, 'gap_before_final_norm', False) else
                'head and pooled LayerNorm')
        _log(f'{source} is a classifier: {", ".join(by_design)} (its '
             f'{what}) are not part of this backbone' +
             (f', whose output channel norms ({", ".join(fresh)}) start at '
              'their initial scale of 1' if fresh else '') +
             '; this is how a pretrained classifier is fine-tuned')
    if set_aside:
        _log('not loaded: ' + '; '.join(set_aside), logging.WARNING)
    if unexpected:
        _log(
            f'unexpected keys in {source} (not in the model): '
            f'{", ".join(unexpected)}', logging.WARNING)
    if missing:
        _log(
            f'missing in {source} (left at their initial values): '
            f'{", ".join(missing)}', logging.WARNING)


def load_pretrained(model: nn.Module,
                    checkpoint: str,
                    prefix: Optional[str] = None,
                    map_location='cpu',
                    use_ema: bool = False) -> None:
    """Load any supported ParCNetV2 checkpoint file into a backbone.

    Args:
        model (nn.Module): a :class:`~mmparcnet.models.ParCNetV2`.
        checkpoint (str): path of the file (local, or a URL scheme mmengine
            knows).
        prefix (str, optional): take only keys under this prefix (for
            example ``'backbone.'``); by default ``backbone.`` is taken when
            the file is a whole-model OpenMMLab checkpoint.
        map_location: as for :func:`torch.load`. Defaults to 'cpu'.
        use_ema (bool): load ``state_dict_ema`` of a timm checkpoint.
            Defaults to False.
    """
    if '://' in str(checkpoint):
        from mmengine.runner.checkpoint import CheckpointLoader
        loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location)
    else:
        loaded = load_checkpoint_file(checkpoint, map_location)
    state = unwrap_state_dict(loaded, str(checkpoint), use_ema=use_ema)
    state, layout = select_prefix(state, prefix)
    load_state_into(model, state, str(checkpoint), layout)
