# ParCNetV2-T on ImageNet-1k, 300 epochs, the ConvNeXt recipe (paper
# Sec. 4.1): AdamW lr 4e-3 for a total batch of 2048 (16 GPUs x 128; use
# --auto-scale-lr for another batch), 20 warm-up epochs then cosine,
# RandAugment, Mixup/CutMix, label smoothing, random erasing, EMA. All but the
# model comes from MMPretrain's own ConvNeXt-T config, also the parameter
# rule: one lr for every parameter (no decay by depth), weight decay 0.05 but
# none on one-dimensional parameters (norms, biases, scales).
#
# Drop path 0.2 as in the reference training script.
_base_ = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ParCNetV2',
        arch='tiny',
        out_indices=(3, ),
        gap_before_final_norm=True,
        drop_path_rate=0.2,
        # the classifier-level TruncNormal(std=0.02) init of the base config
        # is the reference classification init
        init_cfg=None),
    head=dict(in_channels=512))

train_dataloader = dict(batch_size=128)
# the base config's parameter rules; the groups as plain dicts, so that
# compile=True works (mmengine's ConfigDict groups stop Dynamo)
optim_wrapper = dict(
    constructor='PlainGroupsOptimWrapperConstructor', optimizer=dict(lr=4e-3))
auto_scale_lr = dict(base_batch_size=2048)
