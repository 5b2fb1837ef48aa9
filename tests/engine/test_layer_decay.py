import pytest
from mmengine.optim import build_optim_wrapper
from torch import nn

import mmparcnet  # noqa: F401  (registers the constructor)
from mmparcnet.models import ParCNetV2


class Detector(nn.Module):

    def __init__(self, **backbone):
        super().__init__()
        self.backbone = ParCNetV2('tiny', **backbone)
        self.neck = nn.Conv2d(512, 8, 1)
        self.head = nn.Linear(8, 2)


def lr_of(optim_wrapper, model):
    lrs = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            lrs[param] = (group['lr'], group['weight_decay'])
    return {name: lrs[p] for name, p in model.named_parameters() if p in lrs}


def build(model, decay_type, decay_rate, num_layers=None, lr=1e-4):
    paramwise_cfg = dict(decay_rate=decay_rate, decay_type=decay_type)
    if num_layers is not None:
        paramwise_cfg['num_layers'] = num_layers
    return build_optim_wrapper(
        model,
        dict(
            constructor='ParCNetV2LayerDecayOptimizerConstructor',
            paramwise_cfg=paramwise_cfg,
            optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05)))


def test_layer_wise_decay_as_reference_mask_rcnn_t():
    # reference Mask R-CNN-T: decay 0.95, num_layers 7 -> 9 ids, lr * 0.95 **
    # (9 - id - 1); ids: stem 0, stage-0 blocks 1, stage-2 block 7 -> 3 + 7 //
    # 3 = 5, stage 3 -> 7, neck and head 8
    model = Detector()
    lrs = lr_of(build(model, 'layer_wise', 0.95, 7), model)
    expected = {
        'backbone.downsample_layers.0.conv.weight': 1e-4 * 0.95**8,
        'backbone.stages.0.1.mlp.fc1.weight': 1e-4 * 0.95**7,
        'backbone.stages.2.7.token_mixer.pwconv1.weight': 1e-4 * 0.95**3,
        'backbone.stages.3.2.mlp.fc2.weight': 1e-4 * 0.95**1,
        'neck.weight': 1e-4,
        'head.weight': 1e-4,
    }
    for name, lr in expected.items():
        assert lrs[name][0] == pytest.approx(lr), name
    # no weight decay on biases and one-dimensional weights
    assert lrs['backbone.stages.2.7.norm1.weight'][1] == 0.
    assert lrs['backbone.stages.2.7.token_mixer.pwconv1.bias'][1] == 0.
    assert lrs['head.bias'][1] == 0.
    assert lrs['head.weight'][1] == 0.05
    assert lrs['backbone.stages.3.0.res_scale1.scale'][1] == 0.


def test_stage_wise_decay_as_reference_upernet():
    # reference UperNet-S/-B: decay 0.9, stage_wise, num_layers 12 -> 14 ids
    model = Detector()
    lrs = lr_of(build(model, 'stage_wise', 0.9, 12), model)
    assert lrs['backbone.downsample_layers.2.conv.weight'][0] == \
        pytest.approx(1e-4 * 0.9**13)
    assert lrs['backbone.stages.0.0.norm1.weight'][0] == \
        pytest.approx(1e-4 * 0.9**12)
    assert lrs['backbone.stages.3.1.mlp.fc1.weight'][0] == \
        pytest.approx(1e-4 * 0.9**9)
    assert lrs['head.weight'][0] == pytest.approx(1e-4)


def test_stage_wise_decay_as_reference_upernet_t():
    # reference UperNet-T: num_layers 6 -> 8 ids, more than the backbone's 6
    model = Detector()
    lrs = lr_of(build(model, 'stage_wise', 0.9, 6), model)
    assert lrs['backbone.downsample_layers.0.conv.weight'][0] == \
        pytest.approx(4.78e-5, rel=1e-3)
    assert lrs['backbone.stages.3.0.mlp.fc1.weight'][0] == \
        pytest.approx(1e-4 * 0.9**3)
    # the ids the backbone leaves undecayed stay the last ones
    assert lrs['backbone.norm0.weight'][0] == pytest.approx(1e-4)
    assert lrs['head.weight'][0] == pytest.approx(1e-4)


@pytest.mark.parametrize('decay_type,num_layers', [('layer_wise', 7),
                                                   ('layer_wise', None),
                                                   ('stage_wise', 12),
                                                   ('stage_wise', None)])
def test_output_norms_get_the_full_lr(decay_type, num_layers):
    # as in the reference code: anything not under downsample_layers or
    # stages shares the neck's and heads' id
    model = Detector()
    lrs = lr_of(build(model, decay_type, 0.5, num_layers), model)
    for i in range(4):
        assert lrs[f'backbone.norm{i}.weight'] == (pytest.approx(1e-4), 0.)


def test_num_layers_below_the_backbone_count_is_refused():
    # -T counts 7 layers: with 6, stage 3 would learn faster than the heads
    with pytest.raises(ValueError, match='num_layers=6 is too small'):
        build(Detector(), 'layer_wise', 0.9, 6)


def test_num_layers_defaults_to_the_backbone_count():
    model = Detector()
    lrs = lr_of(build(model, 'layer_wise', 0.5), model)
    # 9 ids for -T without num_layers as well
    assert lrs['backbone.downsample_layers.0.conv.weight'][0] == \
        pytest.approx(1e-4 * 0.5**8)


def test_frozen_parameters_are_left_out():
    model = Detector(frozen_stages=1)
    lrs = lr_of(build(model, 'layer_wise', 0.9, 7), model)
    assert 'backbone.stages.0.0.mlp.fc1.weight' not in lrs
    assert 'backbone.stages.1.0.mlp.fc1.weight' in lrs


def test_clear_errors():
    with pytest.raises(ValueError, match='decay_type'):
        build(Detector(), 'block_wise', 0.9)

    class NoDepth(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(2, 2)

    with pytest.raises(TypeError, match='get_layer_depth'):
        build(NoDepth(), 'layer_wise', 0.9)


@pytest.mark.requires('mmpretrain')
def test_mmpretrain_constructor_leaves_final_norm_and_head_undecayed():
    # fine-tuning a classifier with MMPretrain's own constructor: the final
    # norm gets the head's full lr, as MMPretrain's ConvNeXt gives it
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    # whatever scope earlier tests left: the classifier's parts are
    # MMPretrain's
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ImageClassifier(
            backbone=dict(
                type='ParCNetV2',
                arch='tiny',
                out_indices=(3, ),
                gap_before_final_norm=True),
            head=dict(
                type='mmpretrain.LinearClsHead',
                num_classes=10,
                in_channels=512))
    optim_wrapper = build_optim_wrapper(
        model,
        dict(
            constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.5, flat_decay_mult=0.),
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)))
    lrs = lr_of(optim_wrapper, model)
    assert lrs['backbone.downsample_layers.0.conv.weight'][0] == \
        pytest.approx(1e-3 * 0.5**8)
    assert lrs['backbone.stages.3.2.mlp.fc2.weight'][0] == \
        pytest.approx(1e-3 * 0.5)
    assert lrs['backbone.norm3.weight'] == (pytest.approx(1e-3), 0.)
    assert lrs['head.fc.weight'] == (pytest.approx(1e-3), 0.05)


def build_with(model, paramwise_cfg, optimizer=None):
    return build_optim_wrapper(
        model,
        dict(
            constructor='ParCNetV2LayerDecayOptimizerConstructor',
            paramwise_cfg=dict(
                decay_rate=0.95,
                decay_type='layer_wise',
                num_layers=7,
                **paramwise_cfg),
            optimizer=optimizer
            or dict(type='AdamW', lr=1e-4, weight_decay=0.05)))


def test_norm_decay_mult_decays_the_channel_norms_again():
    model = Detector()
    lrs = lr_of(build_with(model, dict(norm_decay_mult=1.)), model)
    assert lrs['backbone.stages.2.7.norm1.weight'] == \
        (pytest.approx(1e-4 * 0.95**3), 0.05)
    assert lrs['backbone.norm3.weight'] == (pytest.approx(1e-4), 0.05)
    # the other kinds keep the reference rule
    assert lrs['backbone.stages.2.7.token_mixer.pwconv1.bias'][1] == 0.
    assert lrs['backbone.stages.3.0.res_scale1.scale'][1] == 0.


def test_bias_and_flat_multipliers_in_mmengine_precedence():
    model = Detector()
    lrs = lr_of(
        build_with(model, dict(bias_decay_mult=0.5, bias_lr_mult=2.)), model)
    # a conv bias: decayed at half, twice the depth's lr
    assert lrs['backbone.stages.2.7.token_mixer.pwconv1.bias'] == \
        (pytest.approx(2e-4 * 0.95**3), pytest.approx(0.025))
    assert lrs['head.bias'] == (pytest.approx(2e-4), pytest.approx(0.025))
    # norms come first: their decay stays 0, their lr the depth's
    assert lrs['backbone.stages.2.7.norm1.weight'] == \
        (pytest.approx(1e-4 * 0.95**3), 0.)
    lrs = lr_of(build_with(model, dict(flat_decay_mult=1.)), model)
    assert lrs['backbone.stages.3.0.res_scale1.scale'][1] == 0.05
    assert lrs['backbone.stages.3.0.norm1.weight'][1] == 0.


def test_dwconv_decay_mult_reaches_the_depthwise_convolutions():
    model = Detector()
    dwconvs = [
        name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
        and m.groups == m.in_channels and m.groups > 1
    ]
    assert dwconvs  # the 7x7 convolutions of the spatial gate units
    lrs = lr_of(build_with(model, dict(dwconv_decay_mult=0.1)), model)
    for name in dwconvs:
        assert lrs[f'{name}.weight'][1] == pytest.approx(0.005), name
        if f'{name}.bias' in lrs:
            assert lrs[f'{name}.bias'][1] == 0.  # a bias first
    assert lrs['backbone.stages.3.0.mlp.fc1.weight'][1] == 0.05


def test_custom_keys_multiply_the_depth_lr_and_set_the_decay():
    model = Detector()
    lrs = lr_of(
        build_with(
            model,
            dict(
                custom_keys={
                    'head': dict(lr_mult=10., decay_mult=0.),
                    'backbone.stages.3': dict(lr_mult=2.),
                    # the longer key wins
                    'backbone.stages.3.2': dict(lr_mult=3., decay_mult=0.5),
                })),
        model)
    assert lrs['head.weight'] == (pytest.approx(1e-3), 0.)
    assert lrs['head.bias'] == (pytest.approx(1e-3), 0.)
    # custom keys skip the other rules: 1-D weights decayed at decay_mult
    assert lrs['backbone.stages.3.0.norm1.weight'] == \
        (pytest.approx(2e-4 * 0.95), 0.05)
    assert lrs['backbone.stages.3.2.mlp.fc2.weight'] == \
        (pytest.approx(3e-4 * 0.95), pytest.approx(0.025))
    assert lrs['backbone.stages.2.7.mlp.fc1.weight'] == \
        (pytest.approx(1e-4 * 0.95**3), 0.05)


def test_unknown_paramwise_keys_are_refused():
    # MMPretrain's name of the decay rate: applied by its constructor, not
    # by this one; so is DCN's offset multiplier
    for key in ('layer_decay_rate', 'dcn_offset_lr_mult'):
        with pytest.raises(ValueError, match=key):
            build_with(Detector(), {key: 0.5})


def test_shared_parameters_need_bypass_duplicate():
    model = Detector()
    model.tied = nn.Linear(8, 2)
    model.tied.weight = model.head.weight
    with pytest.raises(ValueError, match='bypass_duplicate'):
        build_with(model, {})
    optim_wrapper = build_with(model, dict(bypass_duplicate=True))
    params = [
        p for g in optim_wrapper.optimizer.param_groups for p in g['params']
    ]
    assert sum(p is model.head.weight for p in params) == 1


def test_an_optimizer_without_weight_decay():
    model = Detector()
    optim_wrapper = build_with(
        model, {}, optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
    assert all(g['weight_decay'] == 0
               for g in optim_wrapper.optimizer.param_groups)


def test_mmengine_default_constructor_sees_the_channel_norms():
    # DETR-family and Mask2Former recipes: norm_decay_mult=0 with the
    # default constructor reaches every norm of the backbone
    model = Detector()
    optim_wrapper = build_optim_wrapper(
        model,
        dict(
            paramwise_cfg=dict(norm_decay_mult=0.),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)))
    lrs = lr_of(optim_wrapper, model)
    norms = [name for name in lrs if 'norm' in name.rsplit('.', 2)[-2]]
    # per block two, per downsampling one or two, one per output
    blocks = sum(len(stage) for stage in model.backbone.stages)
    assert len(norms) == 2 * blocks + 4 + 4, norms
    for name in norms:
        assert lrs[name][1] == 0., name
    others = [name for name in lrs if name not in norms]
    assert all(lrs[name][1] == 0.05 for name in others)
