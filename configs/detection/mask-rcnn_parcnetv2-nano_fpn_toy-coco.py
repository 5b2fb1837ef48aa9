# The detector of `make demo`: a small ParCNetV2 Mask R-CNN on the generated
# toy COCO set (squares, discs and triangles, `mmparcnet.datasets.make_coco`,
# written to data/toy_coco/ by the demo). The demo fine-tunes it from its
# 64-pixel toy classifier (configs/classification/
# parcnetv2-nano_toy-shapes-64px.py) by adding
#   model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...,
#                                prefix='backbone.')
# on the command line; run alone, it trains from scratch. Sized to learn in
# minutes on a CPU: one block per stage, 64-channel FPN and heads, images of
# about 128-192 pixels whose size changes from iteration to iteration.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

classes = ('square', 'disc', 'triangle')
dims = [16, 32, 64, 128]
channels = 64

model = dict(
    backbone=dict(
        _delete_=True,
        type='ParCNetV2',
        arch=dict(depths=[1, 1, 1, 1], dims=dims),
        out_indices=(0, 1, 2, 3),
        kernel_mode='interpolate',
        # stored at the lengths of the demo's 64-pixel classifier, whose
        # checkpoint the demo starts from (resized to every input)
        pretrain_size=64),
    # GroupNorm in the FPN: batches of 4 are too small for BatchNorm
    neck=dict(
        in_channels=dims,
        out_channels=channels,
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(
            in_channels=channels,
            fc_out_channels=256,
            num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(
            num_convs=2,
            in_channels=channels,
            conv_out_channels=channels,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))

data_root = 'data/toy_coco/'
metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # a new input size nearly every iteration: the oversized kernels are
    # resized to each one
    dict(
        type='RandomChoiceResize',
        scales=[(128, 128), (144, 160), (160, 192), (192, 160)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[13, 15],
        gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=4)
