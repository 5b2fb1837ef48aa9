"""The flows users run: ``mim train`` then ``mim test`` (the toolboxes' own
tools and evaluation) on every config family, on generated data."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from . import toy_configs

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

MIM = osp.join(osp.dirname(sys.executable), 'mim')


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('flows')
    toy_configs.make_toy_data(
        root, coco=(6, 4), ade20k=(4, 2), imagenet=(2, 1))
    return root


def mim(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    result = subprocess.run(
        [MIM] + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


FLOWS = [
    ('mask_rcnn', 'mmdet', toy_configs.MASK_RCNN, r'coco/segm_mAP: '),
    ('cascade', 'mmdet', toy_configs.CASCADE, r'coco/segm_mAP: '),
    ('upernet', 'mmsegmentation', toy_configs.UPERNET, r'mIoU: '),
    ('classifier', 'mmpretrain', toy_configs.CLASSIFIER, r'accuracy/top1: '),
]


@pytest.mark.parametrize(
    'name,toolbox,text,metric', FLOWS, ids=[f[0] for f in FLOWS])
def test_train_then_evaluate(workspace, name, toolbox, text, metric):
    config = workspace / f'{name}.py'
    config.write_text(text)
    work_dir = workspace / 'work_dirs' / name
    train_log = mim(
        ['train', toolbox,
         str(config), '--work-dir',
         str(work_dir)], workspace)
    assert 'ParCNetV2' in train_log or 'parcnetv2' in train_log.lower()
    with open(work_dir / 'last_checkpoint') as file:
        checkpoint = file.read().strip()
    assert osp.isfile(checkpoint)
    test_log = mim([
        'test', toolbox,
        str(config), '--checkpoint', checkpoint, '--work-dir',
        str(work_dir / 'test')
    ], workspace)
    # the checkpoint went through mmengine's loading on this torch
    assert 'Load checkpoint from' in test_log
    line = next(line for line in test_log.splitlines()
                if re.search(metric, line))
    print(f'{name}: {line.strip()}')
    value = float(re.search(metric + r'(-?[0-9.]+)', line).group(1))
    assert value == value  # a number, not NaN


def test_config_of_another_project_trains(workspace):
    """A standard MMDetection config (RetinaNet) that only adds the
    custom_imports line and a ParCNetV2 backbone trains."""
    config = workspace / 'other_project.py'
    config.write_text(toy_configs.OTHER_PROJECT)
    work_dir = workspace / 'work_dirs' / 'other_project'
    log = mim(['train', 'mmdet',
               str(config), '--work-dir',
               str(work_dir)], workspace)
    losses = re.findall(r'Epoch\(train\) \[1\]\[\d+/\d+\].* loss: ([0-9.]+)',
                        log)
    assert losses and all(float(loss) > 0 for loss in losses)


def test_segmentor_trains_in_bfloat16_on_the_cpu(workspace):
    """The UperNet config's AMP on a CPU: one --cfg-options switches to
    CPUAwareAmpOptimWrapper (bf16 autocast, mmengine's loss scaling)."""
    config = workspace / 'upernet_bf16.py'
    config.write_text(toy_configs.UPERNET)
    log = mim([
        'train', 'mmsegmentation',
        str(config), '--work-dir',
        str(workspace / 'work_dirs' / 'upernet_bf16'), '--cfg-options',
        'optim_wrapper.type=CPUAwareAmpOptimWrapper',
        'optim_wrapper.dtype=bfloat16', 'optim_wrapper.loss_scale=dynamic'
    ], workspace)
    assert "type='CPUAwareAmpOptimWrapper'" in log
    losses = [
        float(v) for v in re.findall(r'Iter\(train\) .* loss: ([^ ]+)', log)
    ]
    assert len(losses) == 6
    assert all(loss == loss and loss < float('inf') for loss in losses)
