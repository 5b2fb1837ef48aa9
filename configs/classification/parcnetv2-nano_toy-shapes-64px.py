# The pretraining half of `make demo`: the paper's pipeline in miniature.
# A small ParCNetV2 learns to classify the generated shapes (square, disc,
# triangle: `mmparcnet.datasets.make_imagenet`, ImageNet format, written to
# data/toy_imagenet/ by the demo) at 64x64 pixels, its "ImageNet at 224".
# The oversized kernels are stored at that size's lengths (31, 15, 7, 3 taps
# for maps of 16, 8, 4, 2); the detector of
# configs/detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py starts from this
# checkpoint and resizes them to every detection input.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

classes = ('square', 'disc', 'triangle')
pretrain_size = 64

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ParCNetV2',
        arch=dict(depths=[1, 1, 1, 1], dims=[16, 32, 64, 128]),
        out_indices=(3, ),
        gap_before_final_norm=True,
        pretrain_size=pretrain_size),
    head=dict(
        type='LinearClsHead',
        num_classes=len(classes),
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

data_root = 'data/toy_imagenet'
data_preprocessor = dict(num_classes=len(classes))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=pretrain_size,
        crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(pretrain_size, pretrain_size)),
    dict(type='PackInputs'),
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    batch_size=32,
    **loader,
    dataset=dict(
        data_root=data_root, classes=classes, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    **loader,
    dataset=dict(data_root=data_root, classes=classes, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))  # 3 classes: no top-5
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(
    # mmengine's default rules, the groups as plain dicts (compile=True works)
    constructor='PlainGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    # no weight decay on one-dimensional parameters (norms, biases)
    paramwise_cfg=dict(flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs),
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=32)
