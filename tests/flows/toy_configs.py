"""Toy versions of the repository's configs for the training-flow tests.

Each one is the real config as its ``_base_`` (pipeline structure, schedule
type, optimizer constructor, heads), shrunk to a small backbone, toy data and
a few iterations. They are written next to the generated data and run from
there, so ``data/...`` roots resolve there.
"""
import os.path as osp

from mmparcnet.datasets import make_ade20k, make_coco, make_imagenet

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_toy_data(root, coco=None, ade20k=None, imagenet=None):
    """Generated datasets where the toy configs read them (``root/data/``):
    ``coco`` and ``ade20k`` as (train, val) image counts, ``imagenet`` as
    (train, val) images per class; None leaves a dataset out."""
    data = osp.join(str(root), 'data')
    if coco:
        make_coco(osp.join(data, 'toy_coco'), *coco)
    if ade20k:
        make_ade20k(osp.join(data, 'toy_ade'), *ade20k)
    if imagenet:
        make_imagenet(osp.join(data, 'toy_imagenet'), *imagenet)


def _base(relative):
    return f"_base_ = {osp.join(REPO, 'configs', relative)!r}\n"


# shared by the detection flows: the real pipeline's structure (multi-scale
# with the crop branch) at toy sizes, toy COCO classes, and a plain fp32
# optimizer wrapper (mmengine's AmpOptimWrapper needs CUDA)
TOY_DETECTION = """
classes = ('square', 'disc', 'triangle')
metainfo = dict(classes=classes)
data_root = 'data/toy_coco/'
scales = [(96, 160), (112, 160), (128, 160)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(80, 160), (96, 160)],
              keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range',
              crop_size=(64, 96), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
    ]),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 pipeline=train_pipeline))
val_dataloader = dict(
    **loader,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = []
optim_wrapper = dict(type='OptimWrapper')
default_hooks = dict(logger=dict(interval=1))
"""

MASK_RCNN = _base('detection/mask-rcnn_parcnetv2-t_fpn_amp-ms-crop-3x_coco.py'
                  ) + TOY_DETECTION + """
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1],
                            dims=[16, 32, 48, 64]),
                  drop_path_rate=0.1, init_cfg=None),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32,
                       num_classes=3)))
"""

CASCADE = _base(
    'detection/cascade-mask-rcnn_parcnetv2-t_fpn_4conv1fc-giou_amp-ms-'
    'crop-3x_coco.py') + TOY_DETECTION + """
# the real 4conv1fc GIoU heads with SyncBN, only narrower (a list in a
# child config replaces the base's, so the heads are written out)
bbox_head = [
    dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1,
         in_channels=32, conv_out_channels=32, fc_out_channels=64,
         roi_feat_size=7, num_classes=3,
         bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                         target_means=[0., 0., 0., 0.], target_stds=stds),
         reg_class_agnostic=False, reg_decoded_bbox=True,
         norm_cfg=dict(type='SyncBN', requires_grad=True),
         loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                       loss_weight=1.0),
         loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
    for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                 [0.033, 0.033, 0.067, 0.067])
]
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1],
                            dims=[16, 32, 48, 64]),
                  drop_path_rate=0.1, init_cfg=None),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=bbox_head,
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32,
                       num_classes=3)))
"""

UPERNET = _base(
    'segmentation/upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512.py') + """
crop_size = (64, 64)
data_root = 'data/toy_ade/ADEChallengeData2016'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1],
                            dims=[16, 32, 48, 64]),
                  drop_path_rate=0.1, init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=32),
    auxiliary_head=dict(in_channels=48, channels=16),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 96), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    batch_size=2, **loader,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, **loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=6, val_interval=6)
param_scheduler = [dict(type='PolyLR', power=1.0, begin=0, end=6,
                        eta_min=0.0, by_epoch=False)]
# fp32: mmengine's AmpOptimWrapper needs CUDA; the real constructor stays
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='ParCNetV2LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                       num_layers=12),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=6))
"""

CLASSIFIER = _base('classification/parcnetv2-t_16xb128_in1k.py') + """
data_root = 'data/toy_imagenet'
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1],
                            dims=[16, 32, 48, 64]),
                  pretrain_size=64, drop_path_rate=0.1),
    head=dict(in_channels=64, num_classes=3))
data_preprocessor = dict(num_classes=3)
# batch 1 and no crop: each iteration sees the size of its image
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    batch_size=1, **loader,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, **loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
val_evaluator = dict(type='Accuracy', topk=(1, ))  # 3 classes: no top-5
test_evaluator = val_evaluator
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
auto_scale_lr = dict(enable=False)
"""

# a config of another project: a standard MMDetection config, plus only the
# custom_imports line and a ParCNetV2 backbone
OTHER_PROJECT = """
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ParCNetV2',
                  arch=dict(depths=[1, 1, 1, 1], dims=[16, 32, 48, 64]),
                  out_indices=(1, 2, 3)),
    neck=dict(in_channels=[32, 48, 64]))
""" + TOY_DETECTION.replace("with_mask=True", "with_mask=False")
