# Cascade Mask R-CNN, ParCNetV2-S, 3x. Values of the reference -S config:
# lr 2e-4, layer-wise decay 0.7 over num_layers=13, drop path 0.6.
_base_ = './cascade-mask-rcnn_parcnetv2-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'  # noqa: E501

checkpoint_file = 'pretrained/parcnetv2_small.pth.tar'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7, num_layers=13))
