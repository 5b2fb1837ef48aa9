"""``mmparcnet-compare-backbones``: does ParCNetV2 learn like its relatives?

Trains the repository's toy Mask R-CNN (``configs/detection/
mask-rcnn_parcnetv2-nano_fpn_toy-coco.py``: GN FPN, AdamW 2e-3, gradient
clipping, multi-scale toy COCO) from scratch with several backbones of
ResNet-18's size, changing only the backbone and the FPN's input channels,
and prints each one's COCO metrics (MMDetection's own evaluation) and the
RoI classifier's final training loss as a table.

It was written to find a defect of the backbone's outputs that left the
RoI heads untrained (docs/training.md, "Learning from scratch").

Run it from the repository root (each row is one ``mim train mmdet``, about
3-4 minutes on 2 idle CPU cores at the default 8 epochs).
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

from ..resources import config_path
from ..toolbox_runs import metrics, mim_command, toolbox_env

TOY_CONFIG = config_path('detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py')
CHANNELS = [64, 128, 256, 512]

# every backbone with depths 2-2-2-2 (ResNet-18: two basic blocks a stage)
# and channels 64-512, from scratch
BACKBONES = {
    'resnet18':
    dict(
        type='mmdet.ResNet',
        depth=18,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    'convnext':
    dict(
        type='mmpretrain.ConvNeXt',
        arch=dict(depths=[2, 2, 2, 2], channels=CHANNELS),
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        layer_scale_init_value=1.0),
    'parcnetv2':
    dict(
        type='ParCNetV2',
        arch=dict(depths=[2, 2, 2, 2], dims=CHANNELS),
        out_indices=(0, 1, 2, 3)),
}
LOSS_CLS = re.compile(r'Epoch\(train\).*?\bloss_cls: ([0-9.]+)')


def config_text(backbone: str, data_root: str, epochs: int) -> str:
    """A config: the toy detector with ``backbone`` and ``epochs``."""
    milestones = [max(1, epochs - 2), max(1, epochs - 1)]
    return f"""_base_ = {TOY_CONFIG!r}
custom_imports = dict(
    imports=['mmparcnet'],
    allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, **{BACKBONES[backbone]!r}),
    neck=dict(in_channels={CHANNELS!r}))
data_root = {data_root!r}
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='MultiStepLR', begin=0, end={epochs}, by_epoch=True,
         milestones={milestones!r}, gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval={epochs}))
"""


def train_one(backbone: str, work_dir: str, data_root: str,
              epochs: int) -> dict:
    """``mim train mmdet`` one row; returns its metrics."""
    os.makedirs(work_dir, exist_ok=True)
    config = osp.join(work_dir, f'{backbone}.py')
    with open(config, 'w') as file:
        file.write(config_text(backbone, data_root, epochs))
    command = mim_command() + [
        'train', 'mmdet', config, '--work-dir',
        osp.join(work_dir, backbone)
    ]
    start = time.time()
    result = subprocess.run(
        command, capture_output=True, text=True, env=toolbox_env())
    output = result.stdout + result.stderr
    with open(osp.join(work_dir, f'{backbone}.log'), 'w') as log:
        log.write(output)
    if result.returncode != 0:
        raise SystemExit(f'training {backbone} failed; its output is in '
                         f'{osp.join(work_dir, backbone + ".log")}')
    found = metrics(output)
    losses = LOSS_CLS.findall(output)
    found['roi_loss_cls'] = float(losses[-1]) if losses else float('nan')
    found['minutes'] = (time.time() - start) / 60
    return found


def format_table(rows: dict, epochs: int) -> str:
    lines = [
        '| backbone (from scratch) | epochs | bbox mAP | segm mAP | RoI '
        'loss_cls at the end | minutes |', '|---|---|---|---|---|---|'
    ]
    for name, row in rows.items():
        lines.append(
            f'| {name} | {epochs} | {row.get("bbox_mAP", float("nan")):.3f}'
            f' | {row.get("segm_mAP", float("nan")):.3f} | '
            f'{row["roi_loss_cls"]:.3f} | {row["minutes"]:.1f} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-compare-backbones',
        description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--backbones',
        nargs='+',
        default=list(BACKBONES),
        choices=list(BACKBONES))
    parser.add_argument('--epochs', type=int, default=8)
    parser.add_argument('--work-dir', default='work_dirs/compare_backbones')
    parser.add_argument('--data-root', default='data/toy_coco_compare/')
    parser.add_argument('--num-train', type=int, default=96)
    parser.add_argument('--num-val', type=int, default=24)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmparcnet.datasets import make_coco
    data_root = osp.abspath(args.data_root) + '/'
    if not osp.isfile(
            osp.join(data_root, 'annotations', 'instances_val2017.json')):
        make_coco(data_root, args.num_train, args.num_val)
    rows = {}
    for backbone in args.backbones:
        print(f'training the toy Mask R-CNN with {backbone} ...', flush=True)
        rows[backbone] = train_one(backbone, args.work_dir, data_root,
                                   args.epochs)
        print(f'  {rows[backbone]}', flush=True)
    table = format_table(rows, args.epochs)
    print('\n' + table)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as file:
        json.dump(dict(epochs=args.epochs, rows=rows), file, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
