"""The channel norm is the L2 formula, fused or written out."""
import pytest
import torch

from mmparcnet.analysis import count_macs
from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers import ChannelNorm, norm
from mmparcnet.models.ops.compat import LAYER_NORM_IS_EXACT

SMALL = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])


@pytest.mark.parametrize('fused', [True, False])
def test_channel_norm_is_the_l2_formula(fused):
    # False: the written-out form PyTorch versions whose layer_norm leaves
    # rounding noise on constant vectors get (2.1)
    if fused and not LAYER_NORM_IS_EXACT:
        pytest.skip('this PyTorch\'s layer_norm is not exact on constant '
                    'vectors; the written-out form runs instead')
    layer = ChannelNorm(24, fused=fused)
    layer.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 3, 24, dtype=torch.float64) * 3 + 1
    centred = x - x.mean(-1, keepdim=True)
    expected = centred / centred.norm(
        dim=-1, keepdim=True).clamp_min(1e-6) * layer.weight.double()
    # a constant vector has no direction: zero output, not NaN
    assert torch.all(layer(torch.ones(1, 24) * 7) == 0)
    # whose mean is not exact in float32 either
    assert torch.all(layer(torch.full((3, 24), 3.7)) == 0)
    torch.testing.assert_close(layer.double()(x), expected)


def test_the_fused_form_is_chosen_where_it_is_exact():
    assert ChannelNorm(8).fused == LAYER_NORM_IS_EXACT


def test_mac_count_does_not_depend_on_the_channel_norms_form(monkeypatch):
    # where F.layer_norm is not exact on constant vectors (PyTorch 2.1) the
    # norms are written out in elementwise operations; the count must not
    # change with it (a norm is counted as its layer_norm op), and the
    # counted model is left as it was
    counts, models = [], []
    for exact in (True, False):
        monkeypatch.setattr(norm, 'LAYER_NORM_IS_EXACT', exact)
        model = ParCNetV2(SMALL).eval()
        counts.append(count_macs(model, (1, 3, 64, 96)))
        models.append(model)
    assert counts[0] == counts[1]
    assert not any(m.fused
                   for m in models[1].modules() if isinstance(m, ChannelNorm))
    models[0].load_state_dict(models[1].state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for fused, written in zip(models[0](x), models[1](x)):
            torch.testing.assert_close(fused, written, atol=1e-5, rtol=1e-5)
