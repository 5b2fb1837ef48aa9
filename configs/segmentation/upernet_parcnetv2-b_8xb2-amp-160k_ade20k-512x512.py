# UperNet, ParCNetV2-B, ADE20K 512x512, 160k. Values of the reference -B
# config: lr 1e-4, drop path 0.5, weight decay 0.02, stage-wise decay 0.9
# with num_layers=12 (the -T config's 6 does not carry over).
_base_ = './upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512.py'

checkpoint_file = 'pretrained/parcnetv2_base.pth.tar'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.5,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))

optim_wrapper = dict(
    optimizer=dict(weight_decay=0.02), paramwise_cfg=dict(num_layers=12))
