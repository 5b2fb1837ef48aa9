# ParCNetV2-XT on ImageNet-1k, 300 epochs, the recipe of the -T config.
# The reference publishes no -XT training script; drop path 0.1 is ours
# (ConvNeXt's value for models of this size).
_base_ = './parcnetv2-t_16xb128_in1k.py'

model = dict(
    backbone=dict(arch='xt', drop_path_rate=0.1), head=dict(in_channels=320))
