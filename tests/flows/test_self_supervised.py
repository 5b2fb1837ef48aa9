"""Self-supervised pretraining in MMPretrain, then a linear probe.

MMPretrain's own MoCo v2 config and its own linear-probe benchmark config,
each with only the ``custom_imports`` line, a ParCNetV2 backbone and the
channels that fit it (plus toy data and a few iterations), run with ``mim
train``. The probe loads the MoCo backbone with ``frozen_stages=4``: its
backbone must leave training bitwise as MoCo left it.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from .toy_configs import make_toy_data

pytestmark = pytest.mark.requires('mmcv', 'mmpretrain')

MIM = osp.join(osp.dirname(sys.executable), 'mim')
ARCH = 'dict(depths=[1, 1, 2, 1], dims=[16, 32, 48, 64])'
LOADER = """
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, COLLATE
    dataset=dict(data_root='data/toy_imagenet', pipeline=train_pipeline))
train_cfg = dict(max_epochs=1)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
"""

MOCO = f"""
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'
custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)
model = dict(
    queue_len=64,  # a toy dataset: a queue a few batches long
    backbone=dict(_delete_=True, type='ParCNetV2', arch={ARCH},
                  out_indices=(3, )),
    neck=dict(in_channels=64, hid_channels=64))
view_pipeline = [
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.2, 1.)),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
""" + LOADER.replace(
    'COLLATE', """
    # mmengine marks the dicts of a config inherited with `mmpretrain::` with
    # a `_scope_` key and passes it on to the collate function, which refuses
    # it: written again here, the collate dict has none
    collate_fn=dict(_delete_=True, type='default_collate'),""")

PROBE_BASE = ('mmpretrain::mocov2/benchmarks/'
              'resnet50_8xb32-linear-steplr-100e_in1k.py')
PROBE = f"""
_base_ = {PROBE_BASE!r}
custom_imports = dict(imports=['mmparcnet'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ParCNetV2', arch={ARCH},
                  out_indices=(3, ), frozen_stages=4,
                  init_cfg=dict(type='Pretrained', checkpoint='MOCO',
                                prefix='backbone.')),
    head=dict(in_channels=64, num_classes=3, topk=(1, )))
data_preprocessor = dict(num_classes=3)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
val_dataloader = None
val_evaluator = None
val_cfg = None
""" + LOADER.replace('COLLATE', '')


def mim_train(workspace, name, text):
    config = workspace / f'{name}.py'
    config.write_text(text)
    work_dir = workspace / 'work_dirs' / name
    result = subprocess.run(
        [MIM, 'train', 'mmpretrain',
         str(config), '--work-dir',
         str(work_dir)],
        cwd=workspace,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED='1'),
        timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    state = torch.load(
        work_dir / 'epoch_1.pth', map_location='cpu',
        weights_only=False)['state_dict']
    log = result.stdout + result.stderr
    return state, log


def test_moco_v2_then_a_frozen_linear_probe(tmp_path):
    make_toy_data(tmp_path, imagenet=(4, 1))
    moco, moco_log = mim_train(tmp_path, 'mocov2', MOCO)
    backbone = {
        k[len('backbone.'):]: v
        for k, v in moco.items() if k.startswith('backbone.')
    }
    # MoCo's key encoder holds a second ParCNetV2, a moving average of the
    # query one
    assert any(k.startswith('encoder_k.') for k in moco)
    assert 'loss:' in moco_log
    first = moco_log.split('loss:')[1].split()[0]
    assert torch.isfinite(torch.tensor(float(first)))

    moco_file = tmp_path / 'work_dirs' / 'mocov2' / 'epoch_1.pth'
    probe, probe_log = mim_train(tmp_path, 'probe',
                                 PROBE.replace('MOCO', str(moco_file)))
    assert f'loaded {len(backbone)} tensors into ParCNetV2' in probe_log
    probed = {
        k[len('backbone.'):]: v
        for k, v in probe.items() if k.startswith('backbone.')
    }
    assert set(probed) == set(backbone)
    changed = [k for k in backbone if not torch.equal(probed[k], backbone[k])]
    assert changed == [], changed
    losses = [float(part.split()[0]) for part in probe_log.split('loss:')[1:]]
    assert losses and all(map(torch.isfinite, torch.tensor(losses))), losses
