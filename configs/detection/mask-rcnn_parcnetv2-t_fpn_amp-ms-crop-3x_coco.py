# Mask R-CNN, ParCNetV2-T, FPN, COCO, 3x (36 epochs, steps at 27 and 33),
# multi-scale 480-800 training with the crop branch, AMP, AdamW with
# layer-wise lr decay. Everything but the backbone and the optimizer comes
# from MMDetection's own ConvNeXt-T 3x config.
#
# Values from the reference ParCNetV2 config (mmdet 2.x): lr 1e-4, weight
# decay 0.05 (both also the base config's), layer-wise decay 0.95 over
# num_layers=7, drop path 0.4, total batch 16 (8 GPUs x 2 images). As in the
# reference, the backbone's output norms get the full lr with the neck and
# heads (see ParCNetV2.get_layer_depth).
_base_ = 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'  # noqa: E501

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

# the published ImageNet-1k classifier, read as it is (or converted with
# mmparcnet-convert, then add prefix='backbone.')
checkpoint_file = 'pretrained/parcnetv2_tiny.pth.tar'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ParCNetV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        kernel_mode='interpolate',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    constructor='ParCNetV2LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=7))

# 8 GPUs x 2 images; set --auto-scale-lr to scale lr to another batch
auto_scale_lr = dict(enable=False, base_batch_size=16)
