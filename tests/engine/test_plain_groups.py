"""The constructors' parameter groups are plain dicts with mmengine's
settings, and a compiled optimizer step over them is the eager step."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import build_optim_wrapper
from torch import nn

import mmparcnet  # noqa: F401  (registers the constructors)
from mmparcnet.engine.optimizers import plain_param_groups
from mmparcnet.models import ParCNetV2

# MMPretrain's ConvNeXt rules, which the classification configs inherit
PARAMWISE = dict(
    norm_decay_mult=0.0,
    bias_decay_mult=0.0,
    flat_decay_mult=0.0,
    custom_keys={'head': dict(lr_mult=2.0)})


class Classifier(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = ParCNetV2(
            dict(depths=[1, 1], dims=[8, 16]), out_indices=(1, ))
        self.head = nn.Linear(16, 3)


def build(model, constructor, paramwise_cfg=PARAMWISE):
    cfg = dict(
        optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
        paramwise_cfg=copy.deepcopy(paramwise_cfg))
    if constructor:
        cfg['constructor'] = constructor
    # as a runner passes it: a ConfigDict
    return build_optim_wrapper(model, ConfigDict(cfg)).optimizer


def settings(optimizer, model):
    names = {param: name for name, param in model.named_parameters()}
    return sorted((names[p], group['lr'], group['weight_decay'])
                  for group in optimizer.param_groups for p in group['params'])


def test_the_groups_are_mmengines_as_plain_dicts():
    model = Classifier()
    default = build(model, None)
    # why: mmengine's registry turns the groups into ConfigDicts
    assert all(type(g) is not dict for g in default.param_groups)
    plain = build(model, 'PlainGroupsOptimWrapperConstructor')
    assert all(type(g) is dict for g in plain.param_groups)
    assert all(type(g['params']) is list for g in plain.param_groups)
    assert settings(plain, model) == settings(default, model)
    # the rules reached the groups: a norm undecayed, the head's lr doubled
    rows = {name: (lr, wd) for name, lr, wd in settings(plain, model)}
    assert rows['backbone.stages.0.0.norm1.weight'] == (4e-3, 0.0)
    assert rows['backbone.stages.0.0.mlp.fc1.weight'] == (4e-3, 0.05)
    assert rows['head.weight'] == (8e-3, 0.05)


def test_the_layer_decay_constructor_hands_over_plain_dicts():
    model = Classifier()
    optimizer = build(model, 'ParCNetV2LayerDecayOptimizerConstructor',
                      dict(decay_rate=0.9, decay_type='stage_wise'))
    assert all(type(g) is dict for g in optimizer.param_groups)
    assert len({g['lr'] for g in optimizer.param_groups}) > 1


def test_plain_param_groups_keeps_plain_groups_and_the_state():
    param = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([{'params': [param]}], lr=0.1, momentum=0.9)
    param.grad = torch.ones(2)
    optimizer.step()
    group = optimizer.param_groups[0]
    assert plain_param_groups(optimizer) is optimizer
    assert optimizer.param_groups[0] is group  # already plain: untouched
    assert param in optimizer.state


@pytest.mark.skipif(
    not hasattr(torch, 'compile'), reason='needs torch.compile')
def test_a_compiled_adamw_step_over_the_groups_is_the_eager_step():
    torch.manual_seed(0)
    model = Classifier()
    twin = copy.deepcopy(model)
    optimizers = [
        build(m, 'PlainGroupsOptimWrapperConstructor') for m in (model, twin)
    ]
    for m in (model, twin):
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.5)
    before = [p.detach().clone() for p in model.parameters()]
    compiled_step = torch.compile(optimizers[0].step, backend='eager')
    torch._dynamo.reset()
    for _ in range(2):
        compiled_step()
        optimizers[1].step()
    for a, b, start in zip(model.parameters(), twin.parameters(), before):
        # Dynamo's step may take another of AdamW's implementations
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, start)
