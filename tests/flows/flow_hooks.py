"""Hooks the flow tests put into configs (``custom_imports``) to stand in
for the outside world: a preempted job, and a look at every rank."""
import os
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PreemptHook(Hook):
    """Kill the process without any cleanup right after the checkpoint of
    ``epoch`` or ``iteration`` (1-based, as in ``epoch_2.pth``) is written,
    as a preempted job dies."""

    priority = 'LOWEST'  # after CheckpointHook and RNGStateHook

    def __init__(self, epoch=None, iteration=None):
        self.epoch, self.iteration = epoch, iteration

    def after_train_epoch(self, runner):
        if self.epoch is not None and runner.epoch + 1 == self.epoch:
            os._exit(17)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if self.iteration is not None and runner.iter + 1 == self.iteration:
            os._exit(17)


@HOOKS.register_module()
class SaveRankStateHook(Hook):
    """Every rank writes its model's state dict (parameters and buffers) to
    ``work_dir/rank{r}.pth`` when training ends."""

    def after_train(self, runner):
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(
            dict(
                state=state,
                wrapper=type(runner.model).__name__,
                norms=sorted({
                    type(m).__name__
                    for m in model.modules() if 'Norm' in type(m).__name__
                })), osp.join(runner.work_dir, f'rank{runner.rank}.pth'))


@HOOKS.register_module()
class RecordTrainingHook(Hook):
    """Write ``work_dir/training_record.json``: the loss and gradient norm
    of every training iteration (the latter where the optimizer wrapper
    clips, hence computes it) and how far the backbone's weights moved."""

    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        self.start = {
            k: v.detach().clone()
            for k, v in model.backbone.state_dict().items()
        }
        self.losses, self.grad_norms = [], []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss']))
        hub = runner.message_hub
        if 'train/grad_norm' in hub.log_scalars:
            self.grad_norms.append(
                float(hub.get_scalar('train/grad_norm').current()))

    def after_train(self, runner):
        import json
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        end = model.backbone.state_dict()
        moved = {
            k: float((end[k].float() - v.float()).abs().max())
            for k, v in self.start.items() if v.is_floating_point()
        }
        with open(osp.join(runner.work_dir, 'training_record.json'),
                  'w') as file:
            json.dump(
                dict(
                    losses=self.losses,
                    grad_norms=self.grad_norms,
                    moved=moved), file)


@HOOKS.register_module()
class RecordBackboneInputsHook(Hook):
    """Write ``work_dir/backbone_inputs.json``: the shape of every input the
    backbone gets while testing (under a test-time-augmentation wrapper,
    the wrapped model's)."""

    def before_test(self, runner):
        model = runner.model
        while not hasattr(model, 'backbone'):  # TTA and DDP wrappers
            model = model.module
        self.shapes = []
        self.handle = model.backbone.register_forward_pre_hook(
            lambda module, args: self.shapes.append(list(args[0].shape)))

    def after_test(self, runner):
        import json
        self.handle.remove()
        with open(osp.join(runner.work_dir, 'backbone_inputs.json'),
                  'w') as file:
            json.dump(self.shapes, file)
