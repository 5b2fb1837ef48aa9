# UperNet, ParCNetV2-S, ADE20K 512x512, 160k. Values of the reference -S
# config: lr 1e-4, drop path 0.3, weight decay 0.05, stage-wise decay 0.9
# with num_layers=12 (the -T config's 6 does not carry over).
_base_ = './upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512.py'

checkpoint_file = 'pretrained/parcnetv2_small.pth.tar'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
