"""Exact resume through the toolboxes' own tools: a job killed right after a
checkpoint and restarted with ``mim train ... --resume`` ends where an
uninterrupted job ends: iteration count, learning rate, optimizer state and
weights, bit for bit."""
import pytest
import torch

from mmparcnet.checkpoint.safe_io import load_checkpoint_file
from . import toy_configs
from .mim_runs import mim

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg')

# same seed, deterministic kernels, the generator states in the checkpoints
EXACT = """
randomness = dict(seed=0, deterministic=True)
custom_imports = dict(imports=['mmparcnet', 'flow_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RNGStateHook')]
"""

JOBS = {
    # epoch-based, 3 iterations an epoch, killed after epoch 2 of 3
    'detection': ('mmdet', toy_configs.MASK_RCNN + EXACT + """
train_cfg = dict(max_epochs=3, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
""", 'epoch=2', 'epoch_3.pth'),
    # iteration-based, killed after iteration 4 of 6
    'segmentation': ('mmsegmentation', toy_configs.UPERNET + EXACT + """
default_hooks = dict(checkpoint=dict(interval=2))
""", 'iteration=4', 'iter_6.pth'),
}


def mim_train(args, cwd, preempted=False):
    returncode, output = mim(['train'] + args, cwd, check=False)
    if preempted:  # mim reports the job's own exit status
        assert 'exit status 17' in output, output[-5000:]
    else:
        assert returncode == 0, output[-5000:]
    return output


def load(path):
    return load_checkpoint_file(str(path))


def assert_same_tensors(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f'{where}[{index}]')
    else:
        assert a == b, where


@pytest.mark.parametrize('job', sorted(JOBS))
def test_killed_and_resumed_job_ends_like_an_uninterrupted_one(tmp_path, job):
    toolbox, text, stop, final = JOBS[job]
    if job == 'detection':
        toy_configs.make_toy_data(tmp_path, coco=(6, 2))
    else:
        toy_configs.make_toy_data(tmp_path, ade20k=(4, 1))
    (tmp_path / 'job.py').write_text(text)
    (tmp_path / 'preempted.py').write_text(
        "_base_ = './job.py'\ncustom_hooks = [dict(type='RNGStateHook'), "
        f"dict(type='PreemptHook', {stop})]\n")

    mim_train([toolbox, 'job.py', '--work-dir', 'straight'], tmp_path)
    mim_train([toolbox, 'preempted.py', '--work-dir', 'resumed'],
              tmp_path,
              preempted=True)
    assert not (tmp_path / 'resumed' / final).exists()
    log = mim_train([toolbox, 'job.py', '--work-dir', 'resumed', '--resume'],
                    tmp_path)
    assert 'resumed' in log.lower() and 'RNGStateHook: restored' in log

    straight = load(tmp_path / 'straight' / final)
    resumed = load(tmp_path / 'resumed' / final)
    assert straight['meta']['epoch'] == resumed['meta']['epoch']
    assert straight['meta']['iter'] == resumed['meta']['iter']
    assert_same_tensors(straight['optimizer']['param_groups'],
                        resumed['optimizer']['param_groups'], 'param_groups')
    assert_same_tensors(straight['optimizer']['state'],
                        resumed['optimizer']['state'], 'optimizer')
    assert_same_tensors(straight['param_schedulers'],
                        resumed['param_schedulers'], 'param_schedulers')
    assert_same_tensors(straight['state_dict'], resumed['state_dict'],
                        'state_dict')
