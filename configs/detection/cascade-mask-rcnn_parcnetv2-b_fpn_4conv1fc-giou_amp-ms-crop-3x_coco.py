# Cascade Mask R-CNN, ParCNetV2-B, 3x. Values of the reference -B config:
# lr 2e-4, layer-wise decay 0.8 over num_layers=13, drop path 0.7.
_base_ = './cascade-mask-rcnn_parcnetv2-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'  # noqa: E501

checkpoint_file = 'pretrained/parcnetv2_base.pth.tar'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 576]))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8, num_layers=13))
