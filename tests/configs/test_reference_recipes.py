"""Every shipped config gives each parameter the learning rate and weight
decay of its recipe.

The expected values are computed here, from the rules of the reference
ParCNetV2 fine-tuning code as written out in issue 19, and never from the
backbone's ``get_layer_depth`` / ``get_stage_depth`` or the constructor, so
that a mistake in those cannot hide itself. With ``n = num_layers`` there are
``n + 2`` ids and id ``i`` scales the learning rate by
``decay_rate ** (n + 2 - i - 1)``; one-dimensional weights and biases get no
weight decay:

- layer-wise: ``downsample_layers.0`` is 0, ``downsample_layers.s`` (s > 0)
  is ``cum[s - 1] // 3 + 1``, block b of stage 0 is ``1 + b // 3`` and of
  stage s > 0 ``cum[s - 1] // 3 + 1 + b // 3``, with ``cum`` the running sum
  of the depths;
- stage-wise: ``downsample_layers.*`` is 0, ``stages.s.*`` is ``s + 1``;
- either way everything else (the backbone's output norms, the neck, the
  heads) is ``n + 1``, the full learning rate.

The configs without a reference (Mask R-CNN-S/-B, classification, the toy
detector) are checked against the rule the README states for them.
"""
import copy
import glob
import importlib
import itertools
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import mmparcnet  # noqa: F401  (registers the backbone and the constructor)

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*.py')))
TOOLBOX = {
    'detection': 'mmdet',
    'segmentation': 'mmseg',
    'classification': 'mmpretrain'
}
# the published architectures, written out rather than read from the model
DEPTHS = {
    'xt': [3, 3, 9, 2],
    'tiny': [3, 3, 12, 3],
    'small': [3, 9, 24, 3],
    'base': [3, 9, 24, 3]
}

MASK_RCNN = 'mask-rcnn_parcnetv2-{}_fpn_amp-ms-crop-3x_coco.py'
CASCADE = ('cascade-mask-rcnn_parcnetv2-{}_fpn_4conv1fc-giou_amp-ms-crop-3x_'
           'coco.py')
UPERNET = 'upernet_parcnetv2-{}_8xb2-amp-160k_ade20k-512x512.py'
CLASSIFIER = 'parcnetv2-{}_16xb128_in1k.py'
TOY = 'mask-rcnn_parcnetv2-nano_fpn_toy-coco.py'
TOY_CLASSIFIER = 'parcnetv2-nano_toy-shapes-64px.py'

# (decay type, decay rate, num_layers, lr, weight decay)
REFERENCE = {
    MASK_RCNN.format('t'): ('layer_wise', 0.95, 7, 1e-4, 0.05),
    CASCADE.format('t'): ('layer_wise', 0.7, 7, 2e-4, 0.05),
    CASCADE.format('s'): ('layer_wise', 0.7, 13, 2e-4, 0.05),
    CASCADE.format('b'): ('layer_wise', 0.8, 13, 2e-4, 0.05),
    UPERNET.format('t'): ('stage_wise', 0.9, 6, 1e-4, 0.05),
    UPERNET.format('s'): ('stage_wise', 0.9, 12, 1e-4, 0.05),
    UPERNET.format('b'): ('stage_wise', 0.9, 12, 1e-4, 0.02),
}
# no reference config: the Mask R-CNN-T recipe with the -S/-B layer count,
# as the README says
OURS = {
    MASK_RCNN.format('s'): ('layer_wise', 0.95, 13, 1e-4, 0.05),
    MASK_RCNN.format('b'): ('layer_wise', 0.95, 13, 1e-4, 0.05),
}
# no decay by depth: (lr, weight decay, whether one-dimensional parameters
# are spared weight decay). Classification: MMPretrain's ConvNeXt recipe;
# the toy detector: plain AdamW.
UNIFORM = {
    **{
        CLASSIFIER.format(a): (4e-3, 0.05, True)
        for a in ('xt', 't', 's', 'b')
    },
    TOY: (2e-3, 0.05, False),
    # the demo's classifier: AdamW, one-dimensional parameters spared
    TOY_CLASSIFIER: (2e-3, 0.05, True),
}
# learning rates quoted in issue 19, as literals: a check of the rules above
SPOT_LRS = {
    UPERNET.format('t'): {
        'backbone.downsample_layers.0.conv.weight': 4.78e-5,
        'backbone.norm0.weight': 1e-4
    },
    CASCADE.format('s'): {
        'backbone.norm0.weight': 2e-4
    },
    CASCADE.format('t'): {
        'backbone.norm3.weight': 2e-4
    },
    MASK_RCNN.format('t'): {
        'backbone.norm1.weight': 1e-4
    },
    UPERNET.format('b'): {
        'backbone.norm2.weight': 1e-4
    },
}


def reference_layer_id(name, depths, num_layers):
    parts = name.split('.')
    cum = list(itertools.accumulate(depths))
    if name.startswith('backbone.downsample_layers.'):
        stage = int(parts[2])
        return 0 if stage == 0 else cum[stage - 1] // 3 + 1
    if name.startswith('backbone.stages.'):
        stage, block = int(parts[2]), int(parts[3])
        if stage == 0:
            return 1 + block // 3
        return cum[stage - 1] // 3 + 1 + block // 3
    return num_layers + 1


def reference_stage_id(name, num_layers):
    if name.startswith('backbone.downsample_layers.'):
        return 0
    if name.startswith('backbone.stages.'):
        return int(name.split('.')[2]) + 1
    return num_layers + 1


def expected_lr_and_wd(name, param, rule, depths):
    """The learning rate and weight decay ``rule`` gives one parameter."""
    if len(rule) == 3:  # no decay by depth
        lr, weight_decay, spare_flat = rule
        return lr, 0. if spare_flat and param.ndim == 1 else weight_decay
    decay_type, decay_rate, num_layers, lr, weight_decay = rule
    if decay_type == 'layer_wise':
        layer_id = reference_layer_id(name, depths, num_layers)
    else:
        layer_id = reference_stage_id(name, num_layers)
    assert 0 <= layer_id <= num_layers + 1, name
    scale = decay_rate**(num_layers + 2 - layer_id - 1)
    no_decay = param.ndim == 1 or name.endswith('.bias')
    return lr * scale, 0. if no_decay else weight_decay


def build_model_and_optim_wrapper(path):
    cfg = Config.fromfile(path)
    toolbox = TOOLBOX[osp.basename(osp.dirname(path))]
    importlib.import_module(f'{toolbox}.utils').register_all_modules(
        init_default_scope=True)
    # no checkpoint is read (none is in the repository), nor are weights
    # initialised: only the parameter groups matter
    cfg.model.backbone.init_cfg = None
    model = importlib.import_module(f'{toolbox}.registry').MODELS.build(
        cfg.model)
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    # AmpOptimWrapper needs CUDA; the parameter groups do not depend on it
    optim_cfg.type = 'OptimWrapper'
    for key in ('loss_scale', 'dtype'):
        optim_cfg.pop(key, None)
    return cfg, model, build_optim_wrapper(model, optim_cfg)


def actual_lr_and_wd(model, optim_wrapper):
    found = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            assert param not in found, 'a parameter in two groups'
            found[param] = (group['lr'], group['weight_decay'])
    return {
        name: found[param]
        for name, param in model.named_parameters() if param in found
    }


def test_every_config_has_a_rule_here():
    names = {osp.basename(c) for c in CONFIGS}
    rules = {**REFERENCE, **OURS, **UNIFORM}
    assert names == set(rules)


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_every_parameter_gets_the_recipe_lr_and_weight_decay(path):
    name = osp.basename(path)
    rule = {**REFERENCE, **OURS, **UNIFORM}[name]
    cfg, model, optim_wrapper = build_model_and_optim_wrapper(path)
    depths = DEPTHS[cfg.model.backbone.arch] \
        if isinstance(cfg.model.backbone.arch, str) else None
    actual = actual_lr_and_wd(model, optim_wrapper)

    trainable = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad]
    assert {n for n, _ in trainable} <= set(actual)
    # the output norms are checked, not merely skipped
    assert any(n.startswith('backbone.norm') for n, _ in trainable)
    wrong = []
    for param_name, param in trainable:
        lr, weight_decay = expected_lr_and_wd(param_name, param, rule, depths)
        got_lr, got_wd = actual[param_name]
        if not (math.isclose(got_lr, lr, rel_tol=1e-9)
                and math.isclose(got_wd, weight_decay, abs_tol=1e-12)):
            wrong.append(f'{param_name}: lr {got_lr:.4g}, weight decay '
                         f'{got_wd} (expected {lr:.4g}, {weight_decay})')
    assert not wrong, (f'{len(wrong)} of {len(trainable)} parameters '
                       'differ from the recipe:\n' + '\n'.join(wrong[:20]))

    for param_name, lr in SPOT_LRS.get(name, {}).items():
        assert actual[param_name][0] == pytest.approx(lr, rel=1e-3), \
            param_name
