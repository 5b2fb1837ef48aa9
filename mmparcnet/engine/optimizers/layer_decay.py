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
"""
import json
from typing import List

from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

DECAY_TYPES = ('layer_wise', 'stage_wise')


class ParCNetV2LayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with learning-rate decay by depth.

    Example::

        optim_wrapper = dict(
            type='AmpOptimWrapper',
            constructor='ParCNetV2LayerDecayOptimizerConstructor',
            paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                               num_layers=7),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    """

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        cfg = self.paramwise_cfg
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
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen stages
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
            no_decay = param.ndim == 1 or name.endswith('.bias')
            key = f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}'
            if key not in groups:
                scale = decay_rate**(num_ids - layer_id - 1)
                groups[key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * scale,
                    lr_scale=scale,
                    weight_decay=0. if no_decay else self.base_wd,
                    group_name=key)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)

        rank, _ = get_dist_info()
        if rank == 0:
            summary = {
                key:
                dict(
                    lr=g['lr'],
                    lr_scale=g['lr_scale'],
                    weight_decay=g['weight_decay'],
                    params=len(g['params']))
                for key, g in groups.items()
            }
            MMLogger.get_current_instance().info(
                f'{type(self).__name__} ({decay_type}, decay {decay_rate}): '
                f'{json.dumps(summary)}')
        params.extend(groups.values())
