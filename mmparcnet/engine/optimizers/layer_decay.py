"""Layer-wise and stage-wise learning-rate decay for detectors and segmentors.

MMDetection's and MMSegmentation's ``LearningRateDecayOptimizerConstructor``
only accept backbones whose class name contains "ConvNeXt". This one asks the
backbone itself: ``get_layer_depth`` (layer-wise) or ``get_stage_depth``
(stage-wise), as :class:`~mmparcnet.models.ParCNetV2` provides, so it works
with any backbone that offers them.

The rules are those of the reference ParCNetV2 fine-tuning code, so its
configs carry over unchanged:

- ``paramwise_cfg=dict(decay_rate=r, decay_type='layer_wise' | 'stage_wise',
  num_layers=n)``; with ``n + 2`` layer ids, a parameter with id ``i`` gets
  ``lr * r ** (n + 2 - i - 1)``. The backbone numbers its trunk
  (downsampling layers and blocks) from 0 up to at most ``n``; everything
  else, the backbone's output norms as well as the neck and the heads, gets
  the last id ``n + 1``, hence the full ``lr``. Without ``num_layers`` the
  backbone's own count is used;
- weights of one dimension and biases get no weight decay.

A backbone's ``get_layer_depth(name, prefix)`` / ``get_stage_depth(name,
prefix)`` return ``(id, num_ids)``; its last id ``num_ids - 1`` marks the
parameters it leaves undecayed, which keep the last id under a config's
``num_layers``.

mmengine's rules of ``DefaultOptimWrapperConstructor`` apply on top, with
its meaning and precedence: ``custom_keys`` (``lr_mult`` multiplies the
depth's lr, ``decay_mult`` sets the weight decay, the other rules skipped),
``bias_lr_mult``, and the decay multipliers ``norm_decay_mult`` >
``bias_decay_mult`` > ``dwconv_decay_mult`` > ``flat_decay_mult``. The
reference rule above is their default: ``norm_decay_mult``,
``bias_decay_mult`` and ``flat_decay_mult`` of 0, so a config that sets one
of them to 1 decays that kind again. A key this constructor does not know
is refused, never ignored.
"""
import json
from typing import List, Tuple

from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from .plain_groups import PlainGroupsOptimWrapperConstructor

DECAY_TYPES = ('layer_wise', 'stage_wise')

# the reference rule (biases and 1-D weights undecayed) in mmengine's terms
REFERENCE_DECAY_MULTS = dict(
    norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.)
MMENGINE_KEYS = ('custom_keys', 'bias_lr_mult', 'norm_decay_mult',
                 'bias_decay_mult', 'dwconv_decay_mult', 'flat_decay_mult',
                 'bypass_duplicate')
OWN_KEYS = ('decay_rate', 'decay_type', 'num_layers')
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def named_parameters_with_module(module: nn.Module):
    """``(name, parameter, owning module)`` of every parameter, each once."""
    for prefix, owner in module.named_modules():
        for name, param in owner.named_parameters(recurse=False):
            yield f'{prefix}.{name}' if prefix else name, param, owner


class ParCNetV2LayerDecayOptimizerConstructor(
        PlainGroupsOptimWrapperConstructor):
    """Optimizer wrapper constructor with learning-rate decay by depth
    (its parameter groups plain dicts: :mod:`.plain_groups`).

    Example::

        optim_wrapper = dict(
            type='AmpOptimWrapper',
            constructor='ParCNetV2LayerDecayOptimizerConstructor',
            paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                               num_layers=7,
                               custom_keys={'head': dict(lr_mult=10.)}),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    """

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        cfg = self.paramwise_cfg
        unknown = sorted(set(cfg) - set(OWN_KEYS) - set(MMENGINE_KEYS))
        if unknown:
            raise ValueError(
                f'{type(self).__name__} does not apply paramwise_cfg '
                f'{", ".join(map(repr, unknown))}; it applies '
                f'{", ".join(OWN_KEYS + MMENGINE_KEYS)}')
        if 'decay_rate' not in cfg:
            raise ValueError('paramwise_cfg needs decay_rate for '
                             f'{type(self).__name__}')
        decay_rate = cfg['decay_rate']
        decay_type = cfg.get('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ValueError(f'unknown decay_type {decay_type!r}; expected '
                             f'one of {DECAY_TYPES}')
        backbone = getattr(module, 'backbone', None)
        method = ('get_layer_depth'
                  if decay_type == 'layer_wise' else 'get_stage_depth')
        if not hasattr(backbone, method):
            raise TypeError(
                f'{type(self).__name__} with decay_type={decay_type!r} needs '
                f'a model whose backbone has {method}(); '
                f'{type(backbone).__name__} has not')
        depth_of = getattr(backbone, method)

        num_layers = cfg.get('num_layers')
        rules = {**REFERENCE_DECAY_MULTS, **cfg}
        # the longest matching key wins, ties alphabetically, as in mmengine
        custom_keys = sorted(
            sorted(cfg.get('custom_keys', {})), key=len, reverse=True)
        seen = set()
        groups = {}
        for name, param, owner in named_parameters_with_module(module):
            if not param.requires_grad:
                continue  # frozen stages
            if id(param) in seen:
                # shared between modules: one group only (named_modules
                # lists a shared module once, a shared parameter not)
                if cfg.get('bypass_duplicate', False):
                    continue
                raise ValueError(
                    f'{name} is a parameter already seen under another '
                    'name; set paramwise_cfg bypass_duplicate=True to '
                    'optimise it once')
            seen.add(id(param))
            layer_id, num_ids = depth_of(name, 'backbone.')
            if num_layers is not None:
                # The backbone's last id is the one it does not decay (its
                # output norms, the neck, the heads): it stays the last id
                # under the config's count, as in the reference code.
                if layer_id == num_ids - 1:
                    layer_id = num_layers + 1
                elif layer_id > num_layers:
                    # a trunk parameter would learn as fast as the heads,
                    # or faster
                    raise ValueError(
                        f'num_layers={num_layers} is too small for this '
                        f'backbone: {name} has {decay_type} id {layer_id}; '
                        f'the backbone counts {num_ids - 2} layers')
                num_ids = num_layers + 2
            label, lr_mult, decay_mult, extra = self._rule_of(
                name, param, owner, rules, custom_keys)
            key = f'layer_{layer_id}_{label}'
            if key not in groups:
                scale = decay_rate**(num_ids - layer_id - 1)
                groups[key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * scale * lr_mult,
                    lr_scale=scale * lr_mult,
                    group_name=key,
                    **extra)
                if self.base_wd is not None:
                    groups[key]['weight_decay'] = self.base_wd * decay_mult
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)

        rank, _ = get_dist_info()
        if rank == 0:
            summary = {
                key:
                dict(
                    lr=g['lr'],
                    lr_scale=g['lr_scale'],
                    weight_decay=g.get('weight_decay'),
                    params=len(g['params']))
                for key, g in groups.items()
            }
            MMLogger.get_current_instance().info(
                f'{type(self).__name__} ({decay_type}, decay {decay_rate}): '
                f'{json.dumps(summary)}')
        params.extend(groups.values())

    @staticmethod
    def _rule_of(name: str, param: nn.Parameter, owner: nn.Module, cfg: dict,
                 custom_keys: List[str]) -> Tuple[str, float, float, dict]:
        """``(label, lr_mult, decay_mult, other group settings)`` of one
        parameter, by mmengine's rules and precedence; ``custom_keys`` in
        the order they are tried."""
        for key in custom_keys:
            if key in name:
                settings = dict(cfg['custom_keys'][key])
                lr_mult = settings.pop('lr_mult', 1.)
                decay_mult = settings.pop('decay_mult', 1.)
                return f'custom:{key}', lr_mult, decay_mult, settings
        is_bias = name.rsplit('.', 1)[-1] == 'bias'
        is_norm = isinstance(owner, NORMS)
        lr_mult = 1.
        if is_bias and not is_norm and cfg.get('bias_lr_mult') is not None:
            lr_mult = cfg['bias_lr_mult']
        is_dwconv = (
            isinstance(owner, nn.Conv2d) and owner.in_channels == owner.groups)
        decay_mult = 1.
        for kind, applies in (('norm', is_norm), ('bias', is_bias),
                              ('dwconv', is_dwconv), ('flat',
                                                      param.ndim == 1)):
            if applies and cfg.get(f'{kind}_decay_mult') is not None:
                decay_mult = cfg[f'{kind}_decay_mult']
                break
        # one group per setting, not per rule: fewer groups, fewer kernels
        label = {
            0.: 'no_decay',
            1.: 'decay'
        }.get(decay_mult, f'decay_{decay_mult:g}')
        if lr_mult != 1:
            label += f'_lr_{lr_mult:g}'
        return label, lr_mult, decay_mult, {}
