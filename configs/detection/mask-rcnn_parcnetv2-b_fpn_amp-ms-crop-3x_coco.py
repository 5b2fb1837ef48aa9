# Mask R-CNN, ParCNetV2-B, 3x. The reference publishes no Mask R-CNN config
# for -B; these values are ours: lr, weight decay and decay rate of the
# reference Mask R-CNN-T config (1e-4, 0.05, 0.95), num_layers=13 as the
# reference -B configs count layers, and drop path 0.7 of the reference
# Cascade Mask R-CNN-B config.
_base_ = './mask-rcnn_parcnetv2-t_fpn_amp-ms-crop-3x_coco.py'

checkpoint_file = 'pretrained/parcnetv2_base.pth.tar'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 576]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=13))
