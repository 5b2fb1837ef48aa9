"""ParCNetV2 from configs of MMDetection, MMSegmentation and MMPretrain.

Each toolbox is driven in a fresh interpreter that imports nothing of
mmparcnet itself: the config's ``custom_imports`` line must be enough, as in
another project's config.
"""
import subprocess
import sys
import textwrap

import pytest
import torch

import mmparcnet
from mmparcnet.tools.convert import main as convert_main

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

TINY_BACKBONE = ("dict(type='ParCNetV2', arch=dict(depths=[1, 1, 2, 1], "
                 "dims=[16, 32, 48, 64]), pretrain_size=64)")
CUSTOM_IMPORTS = ("custom_imports = dict(imports=['mmparcnet'], "
                  "allow_failed_imports=False)")


def run_python(code, cwd):
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    return result.stdout


def test_registered_in_every_installed_toolbox():
    assert set(mmparcnet.REGISTERED_IN) == {'mmdet', 'mmseg', 'mmpretrain'}
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG, CLS):
        assert registry.get('ParCNetV2') is mmparcnet.ParCNetV2
    assert DET.get('mmdet.ParCNetV2') is mmparcnet.ParCNetV2


def test_mask_rcnn_config_of_another_project(tmp_path):
    config = tmp_path / 'mask_rcnn_parcnetv2.py'
    config.write_text(
        textwrap.dedent(f'''
        _base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
        {CUSTOM_IMPORTS}
        model = dict(
            backbone=dict(_delete_=True, **{TINY_BACKBONE}),
            neck=dict(in_channels=[16, 32, 48, 64]))
    '''))
    out = run_python(
        f'''
        import sys, torch
        from mmengine.config import Config
        from mmdet.utils import register_all_modules
        from mmdet.registry import MODELS
        register_all_modules()
        cfg = Config.fromfile({str(config)!r})
        assert 'mmparcnet' in sys.modules
        model = MODELS.build(cfg.model)
        model.init_weights()
        feats = model.extract_feat(torch.randn(2, 3, 96, 128))
        print('shapes', [tuple(f.shape) for f in feats])
        print('backbone', type(model.backbone).__name__)
    ''', tmp_path)
    assert 'backbone ParCNetV2' in out
    assert "(2, 256, 24, 32)" in out and "(2, 256, 2, 2)" in out


def test_upernet_config(tmp_path):
    config = tmp_path / 'upernet_parcnetv2.py'
    config.write_text(
        textwrap.dedent(f'''
        _base_ = 'mmseg::_base_/models/upernet_r50.py'
        {CUSTOM_IMPORTS}
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            # the base's ResNet-50 weights are not for this backbone
            pretrained=None,
            data_preprocessor=dict(size=(64, 64)),
            backbone=dict(_delete_=True, **{TINY_BACKBONE}),
            decode_head=dict(in_channels=[16, 32, 48, 64], channels=32,
                             num_classes=5, norm_cfg=norm_cfg),
            auxiliary_head=dict(in_channels=48, channels=16, num_classes=5,
                                norm_cfg=norm_cfg))
    '''))
    out = run_python(
        f'''
        import torch
        from mmengine.config import Config
        from mmseg.utils import register_all_modules
        from mmseg.registry import MODELS
        register_all_modules()
        cfg = Config.fromfile({str(config)!r})
        model = MODELS.build(cfg.model).eval()
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 64, 80), mode='tensor')
        print('logits', tuple(logits.shape))
    ''', tmp_path)
    assert 'logits (1, 5, 16, 20)' in out


def test_image_classifier_reproduces_published_logits(published_checkpoint,
                                                      reference, tmp_path):
    converted = tmp_path / 'converted.pth'
    assert convert_main([published_checkpoint, str(converted)]) == 0
    config = tmp_path / 'parcnetv2_cls.py'
    config.write_text(
        textwrap.dedent(f'''
        {CUSTOM_IMPORTS}
        model = dict(
            type='ImageClassifier',
            backbone=dict(out_indices=(3, ), gap_before_final_norm=True,
                          **{TINY_BACKBONE}),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
                      loss=dict(type='CrossEntropyLoss')))
        load_from = {str(converted)!r}
    '''))
    inputs = tmp_path / 'x.pt'
    torch.save(reference['x_pretrain_size'], inputs)
    out_path = tmp_path / 'logits.pt'
    run_python(
        f'''
        import torch
        from mmengine.config import Config
        from mmengine.runner import load_checkpoint
        from mmpretrain.utils import register_all_modules
        from mmpretrain.registry import MODELS
        register_all_modules()
        cfg = Config.fromfile({str(config)!r})
        model = MODELS.build(cfg.model).eval()
        # what the Runner does with load_from
        load_checkpoint(model, cfg.load_from, map_location='cpu')
        with torch.no_grad():
            logits = model(torch.load({str(inputs)!r}), mode='tensor')
        torch.save(logits, {str(out_path)!r})
    ''', tmp_path)
    logits = torch.load(out_path)
    torch.testing.assert_close(
        logits, reference['logits_pretrain_size'], atol=1e-5, rtol=0)
