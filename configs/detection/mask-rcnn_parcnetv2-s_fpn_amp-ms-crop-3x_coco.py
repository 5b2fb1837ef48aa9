# Mask R-CNN, ParCNetV2-S, 3x. The reference publishes no Mask R-CNN config
# for -S; these values are ours: lr, weight decay and decay rate of the
# reference Mask R-CNN-T config (1e-4, 0.05, 0.95), num_layers=13 as the
# reference -S configs count layers (39 blocks in groups of 3), and drop path
# 0.6 of the reference Cascade Mask R-CNN-S config (drop path follows the
# backbone's depth, not the detector head).
_base_ = './mask-rcnn_parcnetv2-t_fpn_amp-ms-crop-3x_coco.py'

checkpoint_file = 'pretrained/parcnetv2_small.pth.tar'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=13))
