"""The oneDNN linear layers of CPU inference against the plain ops, and
the backbone with them against the published-model fixtures."""
import pytest
import torch
import torch.nn.functional as F

from mmparcnet.checkpoint import load_state_into
from mmparcnet.models import ParCNetV2
from mmparcnet.models.backbones.parcnetv2 import ChannelBGU, ParCNetV2Block
from mmparcnet.models.layers import fused_linear, pointwise, runtime
from mmparcnet.models.layers.fused_linear import fused_linear_applies, linear
from mmparcnet.models.layers.pointwise import PlanesConv1x1

pytestmark = pytest.mark.skipif(
    not fused_linear_applies(torch.zeros(1)),
    reason='no oneDNN fused linear ops in this PyTorch build')


def close(actual, expected):
    # oneDNN's GEMM sums in another order than MKL's
    torch.testing.assert_close(
        actual,
        expected,
        rtol=0,
        atol=1e-5 * max(1.,
                        expected.abs().max().item()))


@pytest.mark.parametrize('shape,out_features', [((7, 5), 3),
                                                ((2, 9, 11, 16), 40),
                                                ((1, 1, 1, 1), 1)])
def test_fused_ops_equal_the_plain_ops(shape, out_features):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator)
    # a slice of a larger weight, as the gate unit passes them
    weight = torch.randn(
        2 * out_features, shape[-1], generator=generator)[out_features:]
    bias = torch.randn(2 * out_features, generator=generator)[out_features:]
    close(linear(x, weight, bias), F.linear(x, weight, bias))
    close(linear(x, weight, None), F.linear(x, weight))


@pytest.mark.filterwarnings('ignore:TF32 acceleration')
def test_fused_ops_apply_only_where_nothing_but_the_clock_differs():
    x = torch.randn(3, 4)
    weight = torch.nn.Parameter(torch.randn(2, 4))
    with torch.no_grad():
        assert fused_linear_applies(x, weight)
        assert not fused_linear_applies(x.double(), weight.double())
        assert not fused_linear_applies(x.bfloat16(), weight.bfloat16())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_linear_applies(x, weight)
        with torch.backends.mkldnn.flags(enabled=False):
            assert not fused_linear_applies(x, weight)
    # autograd records: the fused op has no backward
    assert not fused_linear_applies(x, weight)
    assert fused_linear_applies(x, weight.detach())
    with runtime.fast_paths(False):
        assert not fused_linear_applies(x, weight.detach())


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []

    def spy(name, fn):

        def wrapper(*args):
            calls.append(name)
            return fn(*args)

        monkeypatch.setattr(pointwise, name, wrapper)

    spy('linear', fused_linear.linear)
    return calls


def test_channel_gate_unit_fused_equals_plain(fused_calls):
    torch.manual_seed(0)
    unit = ChannelBGU(8)
    x = torch.randn(2, 5, 6, 8)
    plain = unit(x)  # parameters record: the plain ops
    assert fused_calls == []
    with torch.no_grad():
        fused = unit(x)
    assert fused_calls == ['linear'] * 3
    close(fused, plain.detach())
    # the unit's formula, written out
    a, b = F.linear(x, unit.fc1.weight, unit.fc1.bias).chunk(2, dim=-1)
    close(fused, F.linear(a * F.gelu(b), unit.fc2.weight).detach())


def test_channel_gate_unit_in_chunks_of_rows_equals_plain(
        fused_calls, monkeypatch):
    torch.manual_seed(0)
    unit = ChannelBGU(8)
    x = torch.randn(2, 5, 6, 8)  # 60 rows: 8 chunks of 7 and one of 4
    plain = unit(x).detach()
    with torch.no_grad():
        whole = unit(x)
        monkeypatch.setattr(ChannelBGU, 'block_rows', 7)
        fused_calls.clear()
        chunked = unit(x)
    assert len(fused_calls) == 9 * 3
    assert chunked.shape == plain.shape
    close(chunked, plain)
    close(chunked, whole)


@pytest.mark.parametrize('bias', [True, False])
def test_pointwise_conv_to_planes_by_onednn_equals_plain(fused_calls, bias):
    torch.manual_seed(0)
    conv = PlanesConv1x1(8, 12, bias=bias)
    x = torch.randn(2, 5, 6, 8)  # channels-last
    # the plain 1x1 convolution
    expected = F.conv2d(x.permute(0, 3, 1, 2), conv.weight, conv.bias).detach()
    plain = conv(x)  # parameters record: the plain ops
    assert fused_calls == []
    with torch.no_grad():
        fused = conv(x)
    assert fused_calls == ['linear']
    # NCHW views of channel-major planes
    assert fused.transpose(0, 1).is_contiguous()
    close(plain.detach(), expected)
    close(fused, expected)


def test_block_in_eval_equals_block_in_training_without_drop_path(fused_calls):
    torch.manual_seed(0)
    block = ParCNetV2Block(8, 9, 'interpolate', 'direct', res_scale=True)
    for scale in (block.res_scale1.scale, block.res_scale2.scale):
        torch.nn.init.uniform_(scale, 0.5, 1.5)
    x = torch.randn(2, 5, 6, 8)
    plain = block(x)
    with torch.no_grad():
        fused = block.eval()(x)
    assert fused_calls
    close(fused, plain.detach())


def test_backbone_with_and_without_fusion_matches_the_fixtures(
        reference, reference_arch, fused_calls):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=reference['config']['pretrain_size'],
        kernel_mode='interpolate').eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    expected = reference['feats_interpolated_kernel']
    with torch.no_grad():
        fused = model(reference['x'])
        assert fused_calls
        fused_calls.clear()
        with runtime.fast_paths(False):
            plain = model(reference['x'])
        assert fused_calls == []
    for a, b, ref in zip(fused, plain, expected):
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(b, ref, atol=1e-5, rtol=0)
