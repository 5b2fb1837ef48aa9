"""Stop, resume, and end where an uninterrupted run ends."""
import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner, set_random_seed

import mmparcnet  # noqa: F401  (registers RNGStateHook, safe checkpoints)
from mmparcnet.models import ParCNetV2

TOTAL, STOP = 6, 3


class Classifier(BaseModel):
    """Draws from torch's generator every step (stochastic depth)."""

    def __init__(self):
        super().__init__()
        self.backbone = ParCNetV2(
            dict(depths=[2, 2], dims=[8, 16]),
            out_indices=(1, ),
            gap_before_final_norm=True,
            drop_path_rate=0.5)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0])
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return dict(loss=loss) if mode == 'loss' else logits


class Augmented(torch.utils.data.Dataset):
    """Random augmentation from numpy's and Python's global generators."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        import random
        image = torch.from_numpy(np.random.rand(3, 24, 24).astype(
            np.float32)) + index
        if random.random() < 0.5:
            image = image.flip(-1)
        return dict(inputs=image, labels=torch.tensor(index % 2))


def make_runner(work_dir, by_epoch, stop, resume=False, hook=True):
    if by_epoch:
        loop = dict(by_epoch=True, max_epochs=stop)
        sampler = dict(type='DefaultSampler', shuffle=True)
        checkpoint = dict(type='CheckpointHook', interval=1)
    else:
        loop = dict(by_epoch=False, max_iters=stop * 4)
        sampler = dict(type='InfiniteSampler', shuffle=True)
        checkpoint = dict(type='CheckpointHook', interval=4, by_epoch=False)
    set_random_seed(0)  # the model is built before the Runner seeds
    return Runner(
        model=Classifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=Augmented(),
            sampler=sampler,
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=loop,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        # explicit ends: the schedule does not depend on where a run stops
        param_scheduler=dict(
            type='LinearLR',
            start_factor=0.1,
            begin=0,
            end=TOTAL * 4,
            by_epoch=False),
        default_hooks=dict(
            checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook')] if hook else [],
        randomness=dict(seed=0, deterministic=True),
        resume=resume,
        default_scope='mmengine')


def train_stop_resume(tmp_path, by_epoch, hook):
    full = make_runner(tmp_path / 'full', by_epoch, TOTAL, hook=hook)
    full.train()
    make_runner(tmp_path / 'part', by_epoch, STOP, hook=hook).train()
    resumed = make_runner(
        tmp_path / 'part', by_epoch, TOTAL, resume=True, hook=hook)
    resumed.train()
    return full, resumed


def same_state(a, b):
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.parametrize(
    'by_epoch', [True, False], ids=['epoch_based', 'iter_based'])
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, by_epoch):
    full, resumed = train_stop_resume(tmp_path, by_epoch, hook=True)
    assert resumed.iter == full.iter == TOTAL * 4
    assert resumed.optim_wrapper.get_lr() == full.optim_wrapper.get_lr()
    assert same_state(full, resumed)
    opt_full = full.optim_wrapper.optimizer.state_dict()['state']
    opt_resumed = resumed.optim_wrapper.optimizer.state_dict()['state']
    for key in opt_full:
        for name in ('exp_avg', 'exp_avg_sq'):
            assert torch.equal(opt_full[key][name], opt_resumed[key][name])


def test_without_the_hook_the_runs_differ(tmp_path):
    # the control: stochastic depth and the augmentations make the resumed
    # run diverge when the generators are not restored
    full, resumed = train_stop_resume(tmp_path, True, hook=False)
    assert resumed.iter == full.iter
    assert not same_state(full, resumed)
