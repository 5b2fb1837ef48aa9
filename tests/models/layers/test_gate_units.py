"""The gate units and the block are the paper's equations: their plain
forwards written out here as convolutions on NCHW maps, and their fast
implementations agree with them."""
import pytest
import torch
import torch.nn.functional as F

from mmparcnet.models.layers import ChannelBGU, ParCNetV2Block, SpatialBGU


def spatial_by_hand(unit, x):
    """Eq. 3 on NCHW maps: g, u = split(pwconv1(x)); u = GELU(u);
    pwconv2(g * (oversized(u) + dw7x7(u)))."""
    maps = x.permute(0, 3, 1, 2)
    both = F.conv2d(maps, unit.pwconv1.weight, unit.pwconv1.bias)
    gate, value = both.chunk(2, dim=1)
    value = F.gelu(value)
    mixed = unit.dwconv1.plain_forward(value) + F.conv2d(
        value, unit.dwconv2.weight, padding=3, groups=value.shape[1])
    return F.conv2d(gate * mixed, unit.pwconv2.weight).permute(0, 2, 3, 1)


def channel_by_hand(unit, x):
    """Eq. 4: a, b = split(fc1(x)); fc2(a * GELU(b))."""
    hidden = F.linear(x, unit.fc1.weight, unit.fc1.bias)
    a, b = hidden.chunk(2, dim=-1)
    return F.linear(a * F.gelu(b), unit.fc2.weight)


@pytest.mark.parametrize('fast', [False, True], ids=['plain', 'fast'])
@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_spatial_unit_is_eq_3(fast, train):
    torch.manual_seed(0)
    unit = SpatialBGU(6, 9, fast_paths=fast).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=train)
    with torch.set_grad_enabled(train):
        out = unit(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, spatial_by_hand(unit, x))


@pytest.mark.parametrize('fast', [False, True], ids=['plain', 'fast'])
@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_channel_unit_is_eq_4(fast, train):
    torch.manual_seed(0)
    unit = ChannelBGU(6, fast_paths=fast).double()
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=train)
    with torch.set_grad_enabled(train):
        out = unit(x)
    torch.testing.assert_close(out, channel_by_hand(unit, x))
    assert unit.fc1.out_features == 2 * 15 and unit.fc2.in_features == 15


def test_block_is_two_residual_units():
    torch.manual_seed(0)
    block = ParCNetV2Block(8, 9, res_scale=True).double().eval()
    for scale in (block.res_scale1.scale, block.res_scale2.scale):
        torch.nn.init.uniform_(scale, 0.5, 1.5)
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        y = x * block.res_scale1.scale + spatial_by_hand(
            block.token_mixer, block.norm1(x))
        expected = y * block.res_scale2.scale + channel_by_hand(
            block.mlp, block.norm2(y))
        torch.testing.assert_close(block(x), expected)
