# Cascade Mask R-CNN, ParCNetV2-T, FPN, 4conv1fc bbox heads with GIoU loss
# (SyncBN), COCO, 3x, multi-scale 480-800 with the crop branch, AMP. All but
# the backbone and the optimizer comes from MMDetection's own ConvNeXt-T
# config.
#
# Values from the reference ParCNetV2 config (mmdet 2.x): lr 2e-4, weight
# decay 0.05 (also the base config's), layer-wise decay 0.7 over
# num_layers=7, drop path 0.4, total batch 16. As in the reference, the
# backbone's output norms get the full lr with the neck and heads (see
# ParCNetV2.get_layer_depth).
_base_ = ('mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_'
          '4conv1fc-giou_amp-ms-crop-3x_coco.py')

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

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
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=7),
    optimizer=dict(lr=2e-4))

auto_scale_lr = dict(enable=False, base_batch_size=16)
