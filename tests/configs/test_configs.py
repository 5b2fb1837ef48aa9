"""Every config in configs/ loads, inherits the toolbox's own bases, and
builds its full-size model."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

import mmparcnet  # noqa: F401
from mmparcnet.models import ParCNetV2

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*.py')))
TOOLBOX = {
    'detection': 'mmdet',
    'segmentation': 'mmseg',
    'classification': 'mmpretrain'
}
DIMS = {'xt': 320, 'tiny': 512, 'small': 512, 'base': 576}


def build_model(cfg, toolbox):
    import importlib
    importlib.import_module(f'{toolbox}.utils').register_all_modules(
        init_default_scope=True)
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    return registry.build(cfg.model)


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_config_builds_its_model(path):
    cfg = Config.fromfile(path)
    family = osp.basename(osp.dirname(path))
    assert 'mmparcnet' in cfg.custom_imports['imports']
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.type == 'ParCNetV2'
    # no checkpoint is read here: the files are not in the repository
    backbone_cfg.init_cfg = None
    model = build_model(cfg, TOOLBOX[family])
    assert isinstance(model.backbone, ParCNetV2)
    assert model.backbone.kernel_mode == 'interpolate'
    if family == 'classification':
        assert model.backbone.gap_before_final_norm
        assert model.head.fc.in_features == model.backbone.dims[-1]
        if 'toy' in path:
            return
        assert cfg.auto_scale_lr.base_batch_size == 2048
        assert cfg.optim_wrapper.optimizer.lr == 4e-3
        assert cfg.train_cfg.max_epochs == 300
        assert any(h.type == 'EMAHook' for h in cfg.custom_hooks)
        assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
    elif family == 'detection':
        assert list(cfg.model.neck.in_channels) == model.backbone.dims
        if 'toy' in path:
            return
        assert cfg.train_cfg.max_epochs == 36
        steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert steps[0].milestones == [27, 33]
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.constructor == \
            'ParCNetV2LayerDecayOptimizerConstructor'
        assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
        # the crop branch of the multi-scale pipeline
        choice = [
            t for t in cfg.train_dataloader.dataset.pipeline
            if t.type == 'RandomChoice'
        ][0]
        assert any(t.type == 'RandomCrop' for t in choice.transforms[1])
        if 'cascade' in path:
            heads = model.roi_head.bbox_head
            assert len(heads) == 3
            assert all(h.num_shared_convs == 4 for h in heads)
            assert cfg.model.roi_head.bbox_head[0].loss_bbox.type == \
                'GIoULoss'
    else:
        assert list(cfg.model.decode_head.in_channels) == model.backbone.dims
        assert cfg.model.auxiliary_head.in_channels == model.backbone.dims[2]
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size * 8 == 16
        assert cfg.optim_wrapper.paramwise_cfg.decay_type == 'stage_wise'
        assert cfg.optim_wrapper.optimizer.lr == 1e-4
        assert cfg.train_dataloader.dataset.data_root == \
            'data/ade/ADEChallengeData2016'
        assert 'tta_model' in cfg and 'tta_pipeline' in cfg


@pytest.mark.parametrize('name,values', [
    ('mask-rcnn_parcnetv2-t_fpn_amp-ms-crop-3x_coco.py', (1e-4, 0.95, 7, .4)),
    ('cascade-mask-rcnn_parcnetv2-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
     (2e-4, 0.7, 7, .4)),
    ('cascade-mask-rcnn_parcnetv2-s_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
     (2e-4, 0.7, 13, .6)),
    ('cascade-mask-rcnn_parcnetv2-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
     (2e-4, 0.8, 13, .7)),
])
def test_detection_values_of_the_reference(name, values):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'detection', name))
    lr, decay, num_layers, drop_path = values
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == decay
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == num_layers
    assert cfg.model.backbone.drop_path_rate == drop_path


def test_segmentation_tta_model_builds():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'segmentation',
                 'upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512.py'))
    cfg.model.backbone.init_cfg = None
    cfg.tta_model.module = cfg.model
    from mmseg.models.segmentors import SegTTAModel
    model = build_model(Config(dict(model=cfg.tta_model)), 'mmseg')
    assert isinstance(model, SegTTAModel)
    scales = [t for t in cfg.tta_pipeline if t.type == 'TestTimeAug'][0]
    assert len(scales.transforms[0]) == 6  # six resize ratios
