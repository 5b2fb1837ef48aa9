"""Distributed training on hosts without a GPU (gloo), for CI and debugging.

On GPUs, mmengine's launchers work as they are (``torchrun ... --launcher
pytorch``, Slurm, MPI): nccl, one GPU per process, torch's SyncBatchNorm.
On a CPU-only host three things stand in the way, and this module removes
each:

1. mmengine pins every process to ``cuda:LOCAL_RANK`` while initialising,
   which fails without a driver. :func:`install` (run on ``import
   mmparcnet``) wraps that step: where no CUDA device exists it skips the
   pinning and, since nccl needs GPUs, uses gloo instead (and says so).
   With a GPU nothing changes.
2. The runner builds ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``,
   which DDP refuses for a model on the CPU. ``model_wrapper_cfg=dict(
   type='CPUAwareDistributedDataParallel')`` drops the device ids for CPU
   models (and is the plain wrapper on a GPU).
3. ``torch.nn.SyncBatchNorm`` refuses CPU tensors while synchronising. The
   same wrapper turns such layers into :class:`GlooSyncBatchNorm`, which
   computes the batch statistics of all processes with autograd-aware
   all-reduces: the per-channel sum and count first (the mean), then the sum
   of squared deviations (the variance). That is the statistic of the
   concatenated batch, and the all-reduce's backward (a sum of the
   gradients) gives each input the gradient it gets in one big batch.
"""
import functools
import logging

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from torch.nn.modules.batchnorm import _BatchNorm

_INSTALLED_FLAG = '_mmparcnet_cpu_aware'


def accelerator_available() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def install() -> None:
    """Make mmengine's ``pytorch`` launcher work on a CPU-only host."""
    import mmengine.dist.utils as dist_utils
    original = dist_utils._init_dist_pytorch
    if getattr(original, _INSTALLED_FLAG, False):
        return

    @functools.wraps(original)
    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if accelerator_available() or init_backend != 'torch':
            return original(backend, init_backend=init_backend, **kwargs)
        if backend == 'nccl':
            print_log(
                'mmparcnet: no GPU on this host, so the distributed backend '
                'is gloo instead of nccl; on a CPU model use '
                "model_wrapper_cfg=dict(type='CPUAwareDistributedDataParallel"
                "')",
                logger='current',
                level=logging.WARNING)
            backend = 'gloo'
        torch_dist.init_process_group(backend=backend, **kwargs)

    setattr(init_dist_pytorch, _INSTALLED_FLAG, True)
    dist_utils._init_dist_pytorch = init_dist_pytorch


def _batch_norm_statistics(x: torch.Tensor, group) -> tuple:
    """Mean and biased variance per channel of ``x`` concatenated over the
    processes of ``group``, differentiable, and the total count."""
    reduce_dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = x.new_tensor([x.numel() / x.size(1)])
    torch_dist.all_reduce(count, group=group)
    if count.item() <= 1:
        raise ValueError('Expected more than 1 value per channel when '
                         f'training, got input size {list(x.shape)} and '
                         f'{int(count.item())} values over all processes')
    from torch.distributed.nn.functional import all_reduce
    mean = all_reduce(x.sum(reduce_dims), group=group) / count
    centered = x - mean.reshape(shape)
    var = all_reduce(centered.pow(2).sum(reduce_dims), group=group) / count
    return mean, var, count


class GlooSyncBatchNorm(_BatchNorm):
    """Batch normalisation synchronised over the processes of any backend
    (gloo included), for CPU tensors; evaluation, and training in one
    process, is plain batch normalisation.

    Not a ``torch.nn.SyncBatchNorm`` subclass, because DDP refuses those on
    the CPU; :func:`promote_sync_batchnorm` makes one from a SyncBN layer.
    """

    process_group = None

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        group = self.process_group or torch_dist.group.WORLD
        synchronise = (
            self.training and torch_dist.is_available()
            and torch_dist.is_initialized()
            and torch_dist.get_world_size(group) > 1)
        if not synchronise:
            return super().forward(input)
        x = input.float()
        mean, var, count = _batch_norm_statistics(x, group)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (1.0 / self.num_batches_tracked.item()
                      if self.momentum is None else self.momentum)
            with torch.no_grad():
                unbiased = var * (count / (count - 1))
                self.running_mean.lerp_(mean.to(self.running_mean), factor)
                self.running_var.lerp_(unbiased.to(self.running_var), factor)
        shape = [1, -1] + [1] * (input.dim() - 2)
        output = (x - mean.reshape(shape)
                  ) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            output = output * self.weight.reshape(shape) + self.bias.reshape(
                shape)
        return output.to(input.dtype)


def _gloo_copy(layer: nn.SyncBatchNorm) -> GlooSyncBatchNorm:
    """A :class:`GlooSyncBatchNorm` holding ``layer``'s own parameters and
    buffers (the same tensors: an optimizer built on them still sees
    them), process group and mode."""
    copy = GlooSyncBatchNorm(layer.num_features, layer.eps, layer.momentum,
                             layer.affine, layer.track_running_stats)
    for name, param in layer.named_parameters(recurse=False):
        setattr(copy, name, param)
    for name, buffer in layer.named_buffers(recurse=False):
        setattr(copy, name, buffer)
    copy.process_group = layer.process_group
    copy.train(layer.training)
    return copy


def promote_sync_batchnorm(module: nn.Module) -> int:
    """Replace every ``torch.nn.SyncBatchNorm`` inside ``module`` by a
    :class:`GlooSyncBatchNorm` with the same parameters, buffers and
    process group; returns how many."""
    if isinstance(module, nn.SyncBatchNorm):
        raise TypeError('promote_sync_batchnorm replaces the SyncBN layers '
                        'inside a module; pass the module that holds it')
    promoted = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.SyncBatchNorm):  # mmengine's subclass too
                setattr(parent, name, _gloo_copy(child))
                promoted += 1
    return promoted


class CPUAwareDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also wraps a model on the CPU.

    For a CPU model the ``device_ids`` the runner passes are dropped (DDP
    takes none there) and SyncBN layers become :class:`GlooSyncBatchNorm`.
    On a GPU it is ``MMDistributedDataParallel``. Buffers are not broadcast
    each step, as in mmengine's default wrapper.

    Usage: ``model_wrapper_cfg = dict(type='CPUAwareDistributedDataParallel')``
    """

    def __init__(self, module: nn.Module, device_ids=None, **kwargs):
        kwargs.setdefault('broadcast_buffers', False)
        devices = {p.device.type for p in module.parameters()}
        if devices == {'cpu'}:
            device_ids = None
            kwargs.pop('output_device', None)
            promoted = promote_sync_batchnorm(module)
            if promoted:
                print_log(
                    f'mmparcnet: {promoted} SyncBN layers synchronise '
                    'CPU tensors through GlooSyncBatchNorm',
                    logger='current')
        super().__init__(module=module, device_ids=device_ids, **kwargs)
