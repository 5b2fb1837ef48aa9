import pytest
import torch

from mmparcnet.analysis import (REFERENCE_CLASSIFIERS, ClassifierForCounting,
                                count_macs, count_parameters)
from mmparcnet.checkpoint import load_state_into
from mmparcnet.models import ParCNetV2

ATOL = 1e-5


def reference_backbone(reference, arch, **kwargs):
    model = ParCNetV2(
        arch, pretrain_size=reference['config']['pretrain_size'],
        **kwargs).eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    return model


@pytest.mark.parametrize('mode,input_key,expected_key', [
    ('fixed', 'x', 'feats_fixed_kernel'),
    ('interpolate', 'x', 'feats_interpolated_kernel'),
    ('interpolate', 'x_pretrain_size',
     'feats_interpolated_kernel_pretrain_size'),
    ('fixed', 'x_pretrain_size', 'feats_interpolated_kernel_pretrain_size'),
])
def test_dense_features_match_reference(reference, reference_arch, mode,
                                        input_key, expected_key):
    model = reference_backbone(reference, reference_arch, kernel_mode=mode)
    with torch.no_grad():
        feats = model(reference[input_key])
    assert len(feats) == 4
    for feat, expected in zip(feats, reference[expected_key]):
        assert feat.shape == expected.shape
        torch.testing.assert_close(feat, expected, atol=ATOL, rtol=0)


def test_the_kernel_modes_really_differ_off_the_pretraining_size(
        reference, reference_arch):
    # each mode matches its own fixture above; the other mode's must not
    # (else those matches would not tell the modes apart)
    model = ParCNetV2(
        reference_arch,
        pretrain_size=reference['config']['pretrain_size'],
        kernel_mode='fixed').eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    with torch.no_grad():
        feats = model(reference['x'])
    diffs = [(a - b).abs().max()
             for a, b in zip(feats, reference['feats_interpolated_kernel'])]
    assert max(diffs) > 1e-3


def test_classifier_logits_match_reference(reference, reference_arch):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=64,
        out_indices=(3, ),
        gap_before_final_norm=True).eval()
    state = dict(reference['official_cls_checkpoint']['state_dict'])
    load_state_into(model, state)
    with torch.no_grad():
        pooled = model(reference['x_pretrain_size'])[0]
    logits = torch.nn.functional.linear(pooled, state['head.weight'],
                                        state['head.bias'])
    torch.testing.assert_close(
        logits, reference['logits_pretrain_size'], atol=ATOL, rtol=0)


@pytest.mark.parametrize('arch', list(REFERENCE_CLASSIFIERS))
def test_params_and_macs_match_published_table(arch):
    params, macs = REFERENCE_CLASSIFIERS[arch]
    classifier = ClassifierForCounting(arch, num_classes=1000)
    assert abs(count_parameters(classifier) / 1e6 / params - 1) < 0.01
    assert abs(count_macs(classifier, (1, 3, 224, 224)) / 1e9 / macs -
               1) < 0.05


SMALL = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])


@pytest.mark.parametrize('size', [(32, 32), (33, 47), (64, 31), (95, 17),
                                  (17, 95), (1333, 800), (800, 1333)])
def test_any_input_size_interpolate(size):
    model = ParCNetV2(SMALL).eval()
    h, w = size
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    expected_h, expected_w = (h - 3) // 4 + 1, (w - 3) // 4 + 1
    for i, feat in enumerate(feats):
        assert feat.shape == (1, SMALL['dims'][i], expected_h, expected_w)
        assert torch.isfinite(feat).all()
        expected_h, expected_w = (expected_h - 1) // 2 + 1, \
            (expected_w - 1) // 2 + 1


def test_last_stage_map_of_one_pixel():
    model = ParCNetV2(SMALL).eval()
    feats = model(torch.randn(2, 3, 32, 32))
    assert feats[3].shape == (2, 32, 1, 1)
    feats = model(torch.randn(1, 3, 7, 7))  # every stage is 1x1 or 2x2
    assert [f.shape[-2:] for f in feats][-1] == (1, 1)


def test_gradients_flow_to_all_parameters():
    model = ParCNetV2(SMALL)
    sum(f.sum() for f in model(torch.randn(2, 3, 37, 53))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name


@pytest.mark.parametrize('arch,dims', [('xt', [48, 96, 192, 320]),
                                       ('tiny', [64, 128, 320, 512]),
                                       ('small', [64, 128, 320, 512]),
                                       ('base', [96, 192, 384, 576])])
def test_arch_names(arch, dims):
    model = ParCNetV2(arch)
    assert model.dims == dims
    assert model.kernel_lengths == (111, 55, 27, 13)
    assert ParCNetV2(arch.upper()).depths == model.depths


def test_out_indices_and_gap():
    model = ParCNetV2(SMALL, out_indices=(1, -1)).eval()
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape for f in feats] == [(1, 16, 8, 8), (1, 32, 2, 2)]
    model = ParCNetV2(SMALL, out_indices=3, gap_before_final_norm=True)
    (pooled, ) = model(torch.randn(2, 3, 64, 64))
    assert pooled.shape == (2, 32)
    # a LayerNorm with bias, not the (bias-free) channel norm
    assert isinstance(model.norm3, torch.nn.LayerNorm)
    assert model.norm3.bias is not None
    assert not hasattr(model, 'norm0')


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='unknown ParCNetV2 arch'):
        ParCNetV2('huge')
    with pytest.raises(ValueError, match='same length'):
        ParCNetV2(dict(depths=[1, 1], dims=[8, 16, 32]))
    with pytest.raises(ValueError, match='depths and dims'):
        ParCNetV2(dict(depths=[1, 1]))
    with pytest.raises(ValueError, match='even'):
        ParCNetV2(dict(depths=[1], dims=[7]))
    with pytest.raises(ValueError, match='out_indices'):
        ParCNetV2(SMALL, out_indices=(4, ))
    with pytest.raises(ValueError, match='out_indices'):
        ParCNetV2(SMALL, out_indices=(-5, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        ParCNetV2(SMALL, frozen_stages=5)
    with pytest.raises(ValueError, match='frozen_stages'):
        ParCNetV2(SMALL, frozen_stages=-2)
    with pytest.raises(ValueError, match='kernel_mode'):
        ParCNetV2(SMALL, kernel_mode='circular')
    with pytest.raises(ValueError, match="oversized_conv_impl 'magic'"):
        ParCNetV2(SMALL, oversized_conv_impl='magic')
    with pytest.raises(ValueError, match='drop_path_rate'):
        ParCNetV2(SMALL, drop_path_rate=1.5)
    model = ParCNetV2(SMALL)
    with pytest.raises(ValueError, match='in_channels=3'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model(torch.randn(3, 32, 32))
    assert ParCNetV2(SMALL, in_channels=4)(torch.randn(1, 4, 32, 32))


def test_frozen_stages_freeze_and_stay_frozen():
    model = ParCNetV2(SMALL, frozen_stages=2)
    model.train()
    for i in range(2):
        for module in (model.downsample_layers[i], model.stages[i],
                       getattr(model, f'norm{i}')):
            assert not module.training
            assert all(not p.requires_grad for p in module.parameters())
    assert model.stages[2].training
    assert all(p.requires_grad for p in model.stages[2].parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=1.)
    sum(f.sum() for f in model(torch.randn(1, 3, 64, 64))).backward()
    optimizer.step()
    after = model.state_dict()
    assert torch.equal(before['stages.1.0.mlp.fc1.weight'],
                       after['stages.1.0.mlp.fc1.weight'])
    assert not torch.equal(before['stages.2.0.mlp.fc1.weight'],
                           after['stages.2.0.mlp.fc1.weight'])


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = ParCNetV2(SMALL)
    checkpointed = ParCNetV2(SMALL, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 48, 40)
    for model in (plain, checkpointed):
        sum(f.square().sum() for f in model(x)).backward()
    for (name, a), b in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_drop_path_rates_grow_linearly():
    model = ParCNetV2(
        dict(depths=[2, 3], dims=[8, 16]),
        out_indices=(1, ),
        drop_path_rate=0.4)
    rates = [
        block.drop_path.drop_prob for stage in model.stages for block in stage
    ]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.4, 5))


def test_res_scale_only_in_last_two_stages():
    state = ParCNetV2(SMALL).state_dict()
    stages = {int(k.split('.')[1]) for k in state if 'res_scale' in k}
    assert stages == {2, 3}


def test_default_init_is_the_reference_one():
    torch.manual_seed(0)
    model = ParCNetV2('xt')
    model.init_weights()
    dw = model.stages[0][0].token_mixer.dwconv2.weight  # fan_out 7*7*C/C
    assert abs(dw.std().item() - (2 / 49)**0.5) < 0.02
    pw = model.stages[0][0].token_mixer.pwconv1.weight  # fan_out 2C
    assert abs(pw.std().item() - (2 / 96)**0.5) < 0.02
    fc = model.stages[0][0].mlp.fc1.weight
    assert abs(fc.std().item() - 0.02) < 0.003
    assert torch.all(model.stages[0][0].mlp.fc1.bias == 0)
    assert torch.all(model.norm0.weight == 1)


def test_layer_depth_for_lr_decay():
    # ParCNetV2-T, blocks in groups of three (the reference fine-tuning
    # scheme): stages [3, 3, 12, 3] give ids 1 | 2 | 3..6 | 7, head 8
    model = ParCNetV2('tiny')
    depth = model.get_layer_depth
    assert depth('backbone.downsample_layers.0.conv.weight',
                 'backbone.') == (0, 9)
    assert depth('backbone.stages.0.2.norm1.weight', 'backbone.') == (1, 9)
    assert depth('backbone.downsample_layers.1.conv.weight',
                 'backbone.') == (2, 9)
    assert depth('backbone.stages.2.0.mlp.fc1.weight', 'backbone.') == (3, 9)
    assert depth('backbone.stages.2.11.mlp.fc1.weight', 'backbone.') == (6, 9)
    assert depth('backbone.downsample_layers.3.conv.bias',
                 'backbone.') == (7, 9)
    assert depth('backbone.stages.3.2.mlp.fc2.weight', 'backbone.') == (7, 9)
    # output norms are new layers: the undecayed id, like the head
    assert depth('backbone.norm3.weight', 'backbone.') == (8, 9)
    assert depth('head.fc.weight', 'backbone.') == (8, 9)
    # -S / -B: the reference configs' num_layers=13, plus 2
    assert ParCNetV2('small').get_layer_depth('head.fc.weight',
                                              'backbone.') == (14, 15)
    assert model.get_layer_depth(
        'stages.1.1.norm1.weight', blocks_per_layer=1) == (5, 23)
    stage = model.get_stage_depth
    assert stage('backbone.downsample_layers.2.conv.weight',
                 'backbone.') == (0, 6)
    assert stage('backbone.stages.2.5.norm1.weight', 'backbone.') == (3, 6)
    assert stage('decode_head.conv_seg.weight', 'backbone.') == (5, 6)


def test_kernel_mode_logged_in_repr():
    assert "kernel_mode='fixed'" in repr(ParCNetV2(SMALL, kernel_mode='fixed'))


def test_pretrained_argument_is_a_pretrained_init_cfg(published_checkpoint):
    model = ParCNetV2(
        dict(depths=[1, 1, 2, 1], dims=[16, 32, 48, 64]),
        pretrain_size=64,
        pretrained=published_checkpoint)
    assert model.init_cfg == dict(
        type='Pretrained', checkpoint=published_checkpoint)
    with pytest.raises(ValueError, match='not both'):
        ParCNetV2(
            SMALL,
            pretrained=published_checkpoint,
            init_cfg=dict(type='Pretrained', checkpoint=published_checkpoint))


def test_dense_outputs_are_contiguous_nchw():
    # the contract of OpenMMLab backbones: mmcv's RoIAlign reads its input
    # as contiguous NCHW memory (see test_dense_outputs.py beside this file)
    model = ParCNetV2(SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 96, 80))
    assert all(out.is_contiguous() for out in outs)
