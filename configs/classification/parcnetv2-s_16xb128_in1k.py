# ParCNetV2-S on ImageNet-1k, 300 epochs, the recipe of the -T config.
# Drop path 0.3 as in the reference training script.
_base_ = './parcnetv2-t_16xb128_in1k.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3),
    head=dict(in_channels=512))
