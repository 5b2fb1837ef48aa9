# ParCNetV2-B on ImageNet-1k, 300 epochs, the recipe of the -T config.
# Drop path 0.4 as in the reference training script.
_base_ = './parcnetv2-t_16xb128_in1k.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4), head=dict(in_channels=576))
