"""GlooSyncBatchNorm and the CPU-aware DDP wrapper, in two real processes
(gloo) against one BatchNorm over the concatenated batch."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mmparcnet.engine import (CPUAwareDistributedDataParallel,
                              GlooSyncBatchNorm, promote_sync_batchnorm)

WORLD = 2
# unequal shares, as RoI batches of a detector's heads are
ROWS = (5, 3)


def batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sum(ROWS), 4, 3, 2, generator=generator) * 3 + 1
    upstream = torch.randn(x.shape, generator=generator)
    return x, upstream


def layer(cls):
    torch.manual_seed(1)
    norm = cls(4, momentum=0.3)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    return norm


def worker(rank, init_file, results):
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        x, upstream = batch()
        start = sum(ROWS[:rank])
        x = x[start:start + ROWS[rank]].clone().requires_grad_()
        norm = nn.Sequential(layer(nn.SyncBatchNorm))
        assert promote_sync_batchnorm(norm) == 1
        assert type(norm[0]) is GlooSyncBatchNorm
        for _ in range(2):  # the running statistics move twice
            output = norm(x)
        (output * upstream[start:start + ROWS[rank]]).sum().backward()
        results[rank] = dict(
            output=output.detach(),
            grad=x.grad,
            weight_grad=norm[0].weight.grad,
            bias_grad=norm[0].bias.grad,
            running_mean=norm[0].running_mean,
            running_var=norm[0].running_var)
    finally:
        dist.destroy_process_group()


def test_gloo_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(worker, args=(str(tmp_path / 'init'), results), nprocs=WORLD)

    x, upstream = batch()
    x.requires_grad_()
    norm = layer(nn.BatchNorm2d)
    for _ in range(2):
        output = norm(x)
    (output * upstream).sum().backward()
    # each process holds its rows of the output and input gradient; the
    # parameter gradients are per process and add up (DDP sums them)
    split = lambda t: torch.split(t, ROWS)  # noqa: E731
    for rank in range(WORLD):
        got = results[rank]
        torch.testing.assert_close(got['output'], split(output)[rank])
        torch.testing.assert_close(got['grad'], split(x.grad)[rank])
        torch.testing.assert_close(got['running_mean'], norm.running_mean)
        torch.testing.assert_close(got['running_var'], norm.running_var)
    torch.testing.assert_close(
        results[0]['weight_grad'] + results[1]['weight_grad'],
        norm.weight.grad)
    torch.testing.assert_close(
        results[0]['bias_grad'] + results[1]['bias_grad'], norm.bias.grad)


def test_gloo_sync_batchnorm_is_batchnorm_without_processes():
    x = torch.randn(6, 4, 5, 5)
    sync, plain = layer(nn.SyncBatchNorm), layer(nn.BatchNorm2d)
    promote_sync_batchnorm(nn.ModuleList([sync]))
    torch.testing.assert_close(sync(x), plain(x))
    sync.eval(), plain.eval()
    torch.testing.assert_close(sync(x), plain(x))


def test_wrapper_drops_device_ids_for_a_cpu_model(tmp_path):
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/init', rank=0, world_size=1)
    try:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4))
        wrapped = CPUAwareDistributedDataParallel(model, device_ids=[0])
        assert wrapped.device_ids is None
        assert type(wrapped.module[1]) is GlooSyncBatchNorm
        assert wrapped.broadcast_buffers is False
    finally:
        dist.destroy_process_group()


def test_launcher_initialises_gloo_without_a_gpu(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('the CPU fallback is for hosts without a GPU')
    from mmengine.dist import init_dist

    import mmparcnet  # noqa: F401  (installs the fallback)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(29500 + os.getpid() % 1000))
    init_dist('pytorch', backend='nccl')  # what mmdet's configs ask for
    try:
        assert dist.get_backend() == 'gloo'
    finally:
        dist.destroy_process_group()


def test_promotion_keeps_the_parameters_buffers_and_mode():
    sync = layer(nn.SyncBatchNorm).eval()
    holder = nn.Sequential(nn.Identity(), nn.Sequential(sync))
    params = list(sync.parameters())
    buffers = list(sync.buffers())
    assert promote_sync_batchnorm(holder) == 1
    promoted = holder[1][0]
    assert type(promoted) is GlooSyncBatchNorm and not promoted.training
    # the same tensors: an optimizer built on them still updates the layer
    assert all(a is b for a, b in zip(promoted.parameters(), params))
    assert all(a is b for a, b in zip(promoted.buffers(), buffers))
    assert promoted.momentum == 0.3 and promoted.num_features == 4
    with pytest.raises(TypeError, match='holds it'):
        promote_sync_batchnorm(sync)
