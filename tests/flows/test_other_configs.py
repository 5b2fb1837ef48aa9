"""ParCNetV2 in configs of other projects: the toolboxes' own base configs
with only the ``custom_imports`` line and a ParCNetV2 backbone (default
``init_cfg``, so from scratch), trained with ``mim train`` on zero-padded
batches of several sizes. The families: two-stage and one-stage detectors
(Mask R-CNN, RetinaNet, RTMDet, YOLOX), a DETR-like one with deformable
attention (Deformable DETR), Mask2Former in MMDetection and MMSegmentation,
segmentors with UperNet, DeepLabV3+ and SegFormer heads, and an MMPretrain
classifier.

Every iteration's loss and gradient norm must be finite and of ordinary
size, and the backbone's weights must move; then ``mim test`` evaluates the
trained weights with the toolbox's metric (COCO mAP, mIoU, top-1), through
the config's own test pipeline for detection and classification (the
segmentors' bases are of other datasets: a toy ADE20K one). With zero conv
biases (the reference initialisation) the first iteration was NaN in every
one of them.

The lines after the two that matter only fit the toy data to these configs
(data roots, class counts, small images, a few iterations) and make
mmengine compute the gradient norm (a clip threshold no gradient reaches).
"""
import json
import math
import re

import pytest

from .mim_runs import mim
from .toy_configs import make_toy_data

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

ARCH = 'dict(depths=[1, 1, 2, 1], dims=[16, 32, 48, 64])'
TWO_LINES = f"""
custom_imports = dict(imports=['mmparcnet', 'flow_hooks'],
                      allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='ParCNetV2', arch={ARCH},
                           out_indices=OUT_INDICES, **FIT_BACKBONE),
             **FIT_MODEL)
"""
INSTRUMENTS = """
custom_hooks = [dict(type='RecordTrainingHook')]
optim_wrapper = dict(clip_grad=dict(CLIP_DELETE max_norm=1e12))
default_hooks = dict(logger=dict(interval=1))
"""
COCO = """
classes = ('square', 'disc', 'triangle')
data = dict(data_root='data/toy_coco/', metainfo=dict(classes=classes))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=WITH_MASK),
    dict(type='RandomChoiceResize', scales=[(96, 160), (128, 160),
                                            (160, 96)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0,
                        persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline, **data))
train_cfg = dict(max_epochs=2, val_interval=100)
param_scheduler = []
val_evaluator = None
val_dataloader = None
val_cfg = None
# `mim test` with the config's own test pipeline and COCO evaluation
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True, **data))
test_evaluator = dict(
    ann_file='data/toy_coco/annotations/instances_val2017.json')
"""

ADE20K = """
norm_cfg = dict(type='BN', requires_grad=True)
# batches of several sizes, zero-padded to the largest
PAD_TO_LARGEST = dict(size=None, size_divisor=32)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(160, 96), ratio_range=(0.5, 1.5),
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(type='ADE20KDataset', reduce_zero_label=False,
                 data_root='data/toy_ade/ADEChallengeData2016',
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
train_cfg = dict(max_iters=6, val_interval=100)
val_evaluator = None
val_dataloader = None
val_cfg = None
# `mim test` on the toy validation images at their size, mIoU
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 96), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ADE20KDataset', reduce_zero_label=False,
                 data_root='data/toy_ade/ADEChallengeData2016',
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=100))
"""

CONFIGS = {
    'retinanet':
    ('mmdet', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', (1, 2, 3), """
# after a few iterations every box scores under the config's threshold:
# kept all, so that COCO evaluation has boxes to score
FIT_MODEL = dict(neck=dict(in_channels=[32, 48, 64]),
                 bbox_head=dict(num_classes=3), test_cfg=dict(score_thr=0.0))
""" + COCO.replace('WITH_MASK', 'False')),
    'mask_rcnn': ('mmdet', 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
                  (0, 1, 2, 3), """
FIT_MODEL = dict(neck=dict(in_channels=[16, 32, 48, 64]),
                 roi_head=dict(bbox_head=dict(num_classes=3),
                               mask_head=dict(num_classes=3)),
                 test_cfg=dict(rcnn=dict(score_thr=0.0)))  # as RetinaNet's
""" + COCO.replace('WITH_MASK', 'True')),
    'upernet': ('mmsegmentation',
                'mmseg::upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
                (0, 1, 2, 3), ADE20K + """
FIT_MODEL = dict(
    pretrained=None,
    data_preprocessor=PAD_TO_LARGEST,
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=32,
                     num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=48, channels=16, num_classes=4,
                        norm_cfg=norm_cfg))
"""),
    # DeepLabV3+: the last stage into ASPP, the first as the low-level
    # features (c1_in_channels); the auxiliary FCN head on stage 3
    'deeplabv3plus': ('mmsegmentation', 'mmseg::deeplabv3plus/'
                      'deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
                      (0, 1, 2, 3), ADE20K + """
FIT_MODEL = dict(
    pretrained=None,
    data_preprocessor=PAD_TO_LARGEST,
    decode_head=dict(in_channels=64, in_index=3, channels=32,
                     c1_in_channels=16, c1_channels=8, num_classes=4,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=48, in_index=2, channels=16,
                        num_classes=4, norm_cfg=norm_cfg))
"""),
    # the SegFormer head (an all-MLP decoder) on the four stages
    'segformer':
    ('mmsegmentation', 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-'
     '512x512.py', (0, 1, 2, 3), ADE20K + """
FIT_MODEL = dict(
    pretrained=None,
    data_preprocessor=PAD_TO_LARGEST,
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=32,
                     num_classes=4))
"""),
    # a DETR-like detector with deformable attention; no padding to a
    # multiple, so the backbone sees odd sizes
    'deformable_detr': ('mmdet', 'mmdet::deformable_detr/'
                        'deformable-detr_r50_16xb2-50e_coco.py', (1, 2, 3), """
FIT_MODEL = dict(data_preprocessor=dict(pad_size_divisor=1),
                 neck=dict(in_channels=[32, 48, 64]),
                 bbox_head=dict(num_classes=3))
""" + COCO.replace('WITH_MASK', 'False')),
    # a one-stage detector with three outputs and its own PAFPN neck, on
    # changing sizes; that neck concatenates upsampled maps with the
    # backbone's, which match only for sizes divisible by 32 (RTMDet's own
    # pipeline pads every image to 640x640): with any backbone the config
    # needs pad_size_divisor=32 for other pipelines
    'rtmdet':
    ('mmdet', 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py', (1, 2, 3), """
FIT_MODEL = dict(data_preprocessor=dict(pad_size_divisor=32),
                 neck=dict(in_channels=[32, 48, 64]),
                 bbox_head=dict(num_classes=3))
""" + COCO.replace('WITH_MASK', 'False')),
    # YOLOX: three outputs into a PAFPN (sizes divisible by 32, as for
    # RTMDet), its own batch augment resizing every batch to a new size; its
    # dataset is a mosaic wrapper, replaced by the plain toy dataset
    'yolox':
    ('mmdet', 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py', (1, 2, 3), """
FIT_MODEL = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(96, 192),
             size_divisor=32, interval=1)]),
    neck=dict(in_channels=[32, 48, 64]),
    bbox_head=dict(num_classes=3),
    test_cfg=dict(score_thr=0.0))  # as RetinaNet's
""" + COCO.replace('WITH_MASK', 'False') + """
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CocoDataset',
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'),
                 pipeline=train_pipeline, **data))
"""),
    # Mask2Former for instance segmentation: the four stages into its
    # deformable-attention pixel decoder; its batch augment pads to
    # 1024x1024, left out for the toy images. An iteration-based schedule.
    'mask2former_mmdet':
    ('mmdet', 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
     (0, 1, 2, 3), """
FIT_MODEL = dict(
    data_preprocessor=dict(batch_augments=None),
    panoptic_head=dict(in_channels=[16, 32, 48, 64], num_things_classes=3,
                       num_stuff_classes=0,
                       loss_cls=dict(class_weight=[1.0] * 3 + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=3, num_stuff_classes=0))
""" + COCO.replace('WITH_MASK', 'True') + """
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4,
                 val_interval=100)
"""),
    # Mask2Former in MMSegmentation (its head from MMDetection); the data
    # preprocessor pads to the crop size (512x512) in its base, here to
    # the largest image of the batch
    'mask2former_mmseg': ('mmsegmentation', 'mmseg::mask2former/'
                          'mask2former_r50_8xb2-160k_ade20k-512x512.py',
                          (0, 1, 2, 3), ADE20K + """
FIT_MODEL = dict(
    data_preprocessor=PAD_TO_LARGEST,
    decode_head=dict(in_channels=[16, 32, 48, 64], num_classes=4,
                     loss_cls=dict(class_weight=[1.0] * 4 + [0.1])))
"""),
    'classifier': ('mmpretrain', 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                   (3, ), """
FIT_BACKBONE = dict(gap_before_final_norm=True)
FIT_MODEL = dict(neck=None, head=dict(in_channels=64, num_classes=3,
                                     topk=(1, )))
data_preprocessor = dict(num_classes=3)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=96),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0,
                        persistent_workers=False,
                        dataset=dict(data_root='data/toy_imagenet',
                                     pipeline=train_pipeline))
train_cfg = dict(max_epochs=2, val_interval=100)
val_evaluator = None
val_dataloader = None
val_cfg = None
# `mim test` with the config's own test pipeline (resize, centre crop)
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root='data/toy_imagenet'))
test_evaluator = dict(topk=(1, ))  # 3 classes: no top-5
"""),
}

# the line of each toolbox's evaluation that `mim test` must print
METRICS = {
    'mmdet': r'coco/bbox_mAP: ',
    'mmsegmentation': r'mIoU: ',
    'mmpretrain': r'accuracy/top1: ',
}

# Mask2Former's loss sums 30 terms (class, mask and dice losses of each of
# its ten decoder outputs): about 100 at initialisation, with gradient
# norms to match, for any backbone (a ResNet-18 from scratch in the same
# config: 96, gradient norm 762); its recipe clips them at 0.01
LIMITS = {
    'mask2former_mmdet': (500, 1e4),
    'mask2former_mmseg': (500, 1e4),
}


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('other_configs')
    make_toy_data(root, coco=(8, 2), ade20k=(8, 2), imagenet=(4, 1))
    return root


@pytest.mark.parametrize('name', list(CONFIGS))
def test_toolbox_base_config_trains_from_the_default_init(workspace, name):
    toolbox, base, out_indices, fit = CONFIGS[name]
    config = workspace / f'{name}.py'
    # the fitting lines define FIT_MODEL first: a second `model = ` in the
    # same file would replace the first, not merge with it
    two_lines = TWO_LINES.replace('OUT_INDICES', repr(out_indices))
    # a base that sets clip_grad=None (MMSegmentation's schedules) cannot be
    # updated by a dict, only replaced
    from mmengine.config import Config
    only_base = workspace / f'{name}_base.py'
    only_base.write_text(f'_base_ = {base!r}\n')
    clip_is_none = Config.fromfile(str(only_base)).optim_wrapper.get(
        'clip_grad', 'absent') is None
    instruments = INSTRUMENTS.replace('CLIP_DELETE',
                                      '_delete_=True,' if clip_is_none else '')
    config.write_text(f'_base_ = {base!r}\nFIT_BACKBONE = dict()\n' + fit +
                      two_lines + instruments)
    work_dir = workspace / 'work_dirs' / name
    mim(['train', toolbox,
         str(config), '--work-dir',
         str(work_dir)], workspace)
    with open(work_dir / 'training_record.json') as file:
        record = json.load(file)
    losses, grad_norms = record['losses'], record['grad_norms']
    print(f'{name}: losses {[round(v, 3) for v in losses]}, grad norms '
          f'{[round(v, 3) for v in grad_norms]}')
    assert len(losses) >= 4 and len(grad_norms) == len(losses)
    loss_limit, grad_limit = LIMITS.get(name, (100, 1e3))
    assert all(math.isfinite(v) and 0 < v < loss_limit for v in losses), losses
    # from the reference init a zero-padded batch gave inf / NaN at once
    assert all(math.isfinite(v) and v < grad_limit
               for v in grad_norms), grad_norms
    moved = record['moved']
    stem = moved['downsample_layers.0.conv.weight']
    last = [
        v for k, v in moved.items()
        if k.startswith('stages.') and k.endswith('mlp.fc2.weight')
    ][-1]
    assert stem > 0 and last > 0, moved
    # then the toolbox's own test tool and evaluation on the trained weights
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    output = mim([
        'test', toolbox,
        str(config), '--checkpoint', checkpoint, '--work-dir',
        str(work_dir / 'test')
    ], workspace)
    assert 'Load checkpoint from' in output
    metric = METRICS[toolbox]
    line = next((line for line in output.splitlines()
                 if re.search(metric + r'-?[0-9]', line)), None)
    assert line is not None, output[-3000:]
    value = float(re.search(metric + r'(-?[0-9.]+)', line).group(1))
    print(f'{name}: {metric}{value}')
    assert math.isfinite(value) and value >= 0
