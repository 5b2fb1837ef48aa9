"""Two processes on the CPU (gloo), launched as mmengine's tools are
launched: ``torchrun ... tools/train.py CONFIG --launcher pytorch``. A small
Cascade Mask R-CNN (with its SyncBN heads) and a small UperNet (SyncBN
decode head) train a few iterations; both ranks end with identical
parameters and buffers. In one process the SyncBN layers fall back to
BatchNorm."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmparcnet.checkpoint.safe_io import load_checkpoint_file
from . import toy_configs

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg')

HERE = osp.dirname(osp.abspath(__file__))  # flow_hooks.py, for the jobs

PYTHON_BIN = osp.dirname(sys.executable)
DISTRIBUTED = """
custom_imports = dict(imports=['mmparcnet', 'flow_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='SaveRankStateHook')]
model_wrapper_cfg = dict(type='CPUAwareDistributedDataParallel')
randomness = dict(seed=0)
"""

JOBS = {
    'cascade': ('mmdet', toy_configs.CASCADE + DISTRIBUTED),
    'upernet': ('mmseg', toy_configs.UPERNET + DISTRIBUTED + """
train_cfg = dict(max_iters=3, val_interval=3)
default_hooks = dict(checkpoint=dict(interval=3))
"""),
}


def train_script(toolbox):
    module = __import__(toolbox)
    return osp.join(osp.dirname(module.__file__), '.mim', 'tools', 'train.py')


def run(command, cwd):
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
        PYTHONPATH=HERE + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('distributed')
    toy_configs.make_toy_data(root, coco=(8, 2), ade20k=(4, 2))
    return root


def rank_state(work_dir, rank):
    return load_checkpoint_file(osp.join(work_dir, f'rank{rank}.pth'))


@pytest.mark.parametrize('job', sorted(JOBS))
def test_two_cpu_processes_train_to_identical_weights(workspace, job):
    toolbox, text = JOBS[job]
    config = workspace / f'{job}.py'
    config.write_text(text)
    work_dir = workspace / 'work_dirs' / job
    log = run([
        osp.join(PYTHON_BIN, 'torchrun'), '--standalone', '--nproc_per_node',
        '2',
        train_script(toolbox),
        str(config), '--launcher', 'pytorch', '--work-dir',
        str(work_dir)
    ], workspace)
    assert 'gloo instead of nccl' in log
    assert 'Distributed training: True' in log
    if job == 'cascade':  # 8 images, 2 a batch, split over 2 ranks
        assert 'Epoch(train) [1][2/2]' in log

    ranks = [rank_state(work_dir, rank) for rank in (0, 1)]
    for state in ranks:
        assert state['wrapper'] == 'CPUAwareDistributedDataParallel'
        assert 'GlooSyncBatchNorm' in state['norms']
        assert 'SyncBatchNorm' not in state['norms']
    first, second = ranks[0]['state'], ranks[1]['state']
    assert first.keys() == second.keys()
    synced = [k for k in first if k.endswith('running_mean')]
    assert synced  # the SyncBN statistics are among what must agree
    for key in first:
        assert torch.equal(first[key], second[key]), key
        assert torch.isfinite(first[key].float()).all(), key


def test_one_process_falls_back_to_batchnorm(workspace):
    config = workspace / 'cascade_single.py'
    config.write_text(toy_configs.CASCADE + DISTRIBUTED)
    work_dir = workspace / 'work_dirs' / 'cascade_single'
    run([
        osp.join(PYTHON_BIN, 'python'),
        train_script('mmdet'),
        str(config), '--work-dir',
        str(work_dir)
    ], workspace)
    state = rank_state(work_dir, 0)
    assert 'SyncBatchNorm' not in state['norms']
    assert 'GlooSyncBatchNorm' not in state['norms']
    # mmengine's revert_sync_batchnorm: plain batch norm of any rank
    assert '_BatchNormXd' in state['norms'] or 'BatchNorm2d' in state['norms']
