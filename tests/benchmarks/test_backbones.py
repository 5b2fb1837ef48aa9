"""The backbones by name, and the cost-accounting variant."""
import copy

import pytest
import torch

from mmparcnet.benchmarks import backbones
from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers import SpatialBGU
from mmparcnet.models.ops.registry import Dispatch


def test_the_accounting_variant_is_parcnetv2_less_its_oversized_conv():
    torch.manual_seed(0)
    full = ParCNetV2('xt', oversized_conv_impl='direct').eval()
    variant = backbones.without_oversized_conv(copy.deepcopy(full))
    # batch 2: the 7x7 branch's output then reaches the projection in
    # another layout than the sum's
    x = torch.randn(2, 3, 72, 104)
    with torch.no_grad():
        with_conv, without = full(x), variant(x)
        for name, param in full.named_parameters():  # silence the conv
            if '.dwconv1.' in name:
                param.zero_()
        silenced = full(x)
    for ours, reference, other in zip(without, silenced, with_conv):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
        # and the conv was there to leave out, beyond that tolerance
        assert not torch.allclose(ours, other, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fast_paths', [True, False])
def test_the_accounting_variant_trains_as_the_silenced_model(fast_paths):
    # with gradients the units take other paths (and with the fast paths
    # off, the plain computation)
    torch.manual_seed(0)
    full = ParCNetV2('xt', fast_paths=fast_paths).train()
    for name, param in full.named_parameters():
        if '.dwconv1.' in name:
            param.requires_grad_(False).zero_()
    variant = backbones.without_oversized_conv(copy.deepcopy(full))
    x = torch.randn(1, 3, 64, 96)
    ours, reference = variant(x), full(x)
    for out, ref in zip(ours, reference):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    sum(o.sum() for o in ours).backward()
    sum(o.sum() for o in reference).backward()
    grads = dict(variant.named_parameters())
    for name, param in full.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(
                grads[name].grad, param.grad, rtol=1e-4, atol=1e-5)


def test_the_fast_paths_off_row_runs_the_plain_computation():
    builders, source = backbones.build_backbones([backbones.FAST_PATHS_OFF])
    assert source is None
    model = builders[backbones.FAST_PATHS_OFF]()
    units = [m for m in model.modules() if isinstance(m, SpatialBGU)]
    assert units and not any(
        isinstance(unit.compute, Dispatch) for unit in units)
    assert backbones.source_of(backbones.FAST_PATHS_OFF, 'timm') == 'mmparcnet'
    assert backbones.source_of('ConvNeXt-T', 'timm') == 'timm'


def test_baselines_need_mmpretrain_or_timm_only_when_asked_for(monkeypatch):

    def missing():
        raise ImportError('not installed')

    monkeypatch.setattr(backbones, '_mmpretrain_baselines', missing)
    monkeypatch.setattr(backbones, '_timm_baselines', missing)
    builders, _ = backbones.build_backbones(['ParCNetV2-T'])
    assert list(builders) == ['ParCNetV2-T']
    with pytest.raises(
            SystemExit,
            match='ConvNeXt-T come from mmpretrain '
            'or timm, and neither is installed'):
        backbones.build_backbones(['ParCNetV2-T', 'ConvNeXt-T'])
    with pytest.raises(SystemExit, match=r"unknown backbones \['ResNet'\]"):
        backbones.build_backbones(['ResNet'])
