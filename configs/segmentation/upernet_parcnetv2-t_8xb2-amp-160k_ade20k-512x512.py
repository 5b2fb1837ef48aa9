# UperNet, ParCNetV2-T, ADE20K 512x512, 160k iterations, total batch 16
# (8 GPUs x 2), AMP, AdamW lr 1e-4 with stage-wise decay 0.9, 1500 linear
# warm-up iterations then poly. Everything but the backbone and the
# optimizer comes from MMSegmentation's own ConvNeXt-T UperNet config.
#
# Values from the reference ParCNetV2-T configs (mmseg 0.x, single- and
# multi-scale alike): lr 1e-4, drop path 0.3, weight decay 0.05, stage-wise
# decay 0.9 with num_layers=6 (the reference -S and -B configs use 12). With
# num_layers=n there are n + 2 ids: downsampling layers 0, stage i's blocks
# i + 1, output norms, neck and heads n + 1 (the full lr).
#
# Single-scale test: tools/test.py CONFIG CHECKPOINT
# Multi-scale + flip (TTA): tools/test.py CONFIG CHECKPOINT --tta
_base_ = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'  # noqa: E501

custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)

checkpoint_file = 'pretrained/parcnetv2_tiny.pth.tar'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ParCNetV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        kernel_mode='interpolate',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))

optim_wrapper = dict(
    constructor='ParCNetV2LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

auto_scale_lr = dict(enable=False, base_batch_size=16)
