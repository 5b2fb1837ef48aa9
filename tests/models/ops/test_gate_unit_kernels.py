"""The gate units' fast implementations against their plain forwards:
oneDNN's GEMMs in CPU inference, the gated projection that keeps less for
the backward pass in training, in values, gradients and memory."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmparcnet.checkpoint import load_state_into
from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers import (ChannelBGU, ParCNetV2Block, SpatialBGU,
                                     norm)
from mmparcnet.models.ops import gate_units, onednn, registry
from mmparcnet.models.ops import triton as triton_kernels
from mmparcnet.models.ops.context import Context, call_context
from mmparcnet.models.ops.oversized import matmul as matmul_module

needs_onednn = pytest.mark.skipif(
    not onednn.AVAILABLE,
    reason='no oneDNN fused linear ops in this PyTorch build')


def close(actual, expected):
    # oneDNN's GEMM sums in another order than MKL's
    torch.testing.assert_close(
        actual,
        expected,
        rtol=0,
        atol=1e-5 * max(1.,
                        expected.abs().max().item()))


@needs_onednn
@pytest.mark.parametrize('shape,out_features', [((7, 5), 3),
                                                ((2, 9, 11, 16), 40),
                                                ((1, 1, 1, 1), 1)])
def test_onednn_linear_equals_the_plain_op(shape, out_features):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator)
    # a slice of a larger weight, as the gate unit passes them
    weight = torch.randn(
        2 * out_features, shape[-1], generator=generator)[out_features:]
    bias = torch.randn(2 * out_features, generator=generator)[out_features:]
    close(onednn.linear(x, weight, bias), F.linear(x, weight, bias))
    close(onednn.linear(x, weight, None), F.linear(x, weight))


@pytest.fixture
def onednn_calls(monkeypatch):
    calls = []
    original = gate_units.onednn_linear

    def spy(*args):
        calls.append('linear')
        return original(*args)

    monkeypatch.setattr(gate_units, 'onednn_linear', spy)
    return calls


@needs_onednn
def test_channel_unit_by_onednn_equals_plain(onednn_calls):
    torch.manual_seed(0)
    unit = ChannelBGU(8)
    x = torch.randn(2, 5, 6, 8)
    plain = unit.plain_forward(x)
    assert onednn_calls == []
    with torch.no_grad():
        fused = unit(x)
    assert onednn_calls == ['linear'] * 3
    close(fused, plain.detach())


@needs_onednn
def test_channel_unit_in_blocks_of_rows_equals_plain(onednn_calls):
    torch.manual_seed(0)
    unit = ChannelBGU(8)
    x = torch.randn(2, 5, 6, 8)  # 60 rows: 8 blocks of 7 and one of 4
    plain = unit.plain_forward(x).detach()
    with torch.no_grad():
        ctx = call_context(x, module=unit)
        whole = gate_units.channel_onednn(unit, ctx, x)
        onednn_calls.clear()
        chunked = gate_units.channel_onednn(unit, ctx, x, block_rows=7)
    assert len(onednn_calls) == 9 * 3
    assert chunked.shape == plain.shape
    close(chunked, plain)
    close(chunked, whole)


@needs_onednn
@pytest.mark.parametrize('bias', [True, False])
def test_projection_to_planes_by_onednn_equals_plain(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 12, 1, bias=bias)
    x = torch.randn(2, 5, 6, 8)  # channels-last
    expected = conv(x.permute(0, 3, 1, 2)).detach()
    with torch.no_grad():
        by_gemm = gate_units.planes_by_gemm(conv, x)
        by_onednn = gate_units.planes_by_onednn(conv, x)
    for planes in (by_gemm, by_onednn):
        # NCHW views of channel-major planes
        assert planes.transpose(0, 1).is_contiguous()
        close(planes, expected)


@needs_onednn
def test_block_in_eval_equals_block_in_training_without_drop_path(
        onednn_calls):
    torch.manual_seed(0)
    block = ParCNetV2Block(8, 9, 'interpolate', 'direct', res_scale=True)
    for scale in (block.res_scale1.scale, block.res_scale2.scale):
        torch.nn.init.uniform_(scale, 0.5, 1.5)
    x = torch.randn(2, 5, 6, 8)
    plain = block(x)
    with torch.no_grad():
        fused = block.eval()(x)
    assert onednn_calls
    close(fused, plain.detach())


def test_backbone_with_and_without_fast_paths_matches_the_fixtures(
        reference, reference_arch, onednn_calls):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=reference['config']['pretrain_size'],
        kernel_mode='interpolate').eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    expected = reference['feats_interpolated_kernel']
    with torch.no_grad():
        fast = model(reference['x'])
        assert bool(onednn_calls) == onednn.AVAILABLE
        onednn_calls.clear()
        model.set_fast_paths(False)
        plain = model(reference['x'])
        assert onednn_calls == []
    for a, b, ref in zip(fast, plain, expected):
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(b, ref, atol=1e-5, rtol=0)


@pytest.mark.skipif(
    not triton_kernels.AVAILABLE, reason='needs Triton and PyTorch >= 2.6')
def test_channel_unit_with_the_fused_gated_gelu_equals_plain():
    # on CPU tensors the operator runs its reference; the kernels
    # themselves: tests/models/ops/test_triton_kernels.py
    torch.manual_seed(0)
    unit = ChannelBGU(8).double()
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64, requires_grad=True)
    fused = gate_units.channel_triton(unit, call_context(x, module=unit), x)
    grads = torch.autograd.grad(fused.sum(), [x, *unit.parameters()])
    plain = unit.plain_forward(x)
    expected = torch.autograd.grad(plain.sum(), [x, *unit.parameters()])
    torch.testing.assert_close(fused, plain)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(
    not triton_kernels.AVAILABLE, reason='needs Triton and PyTorch >= 2.6')
@pytest.mark.parametrize('mix', ['both', 'local alone'])
def test_spatial_unit_with_the_fused_gated_sum_equals_plain(mix):
    # on CPU tensors the operators run their references; the kernels
    # themselves: tests/models/ops/test_triton_kernels.py
    torch.manual_seed(0)
    unit = SpatialBGU(8, 9).double()
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64, requires_grad=True)
    params = [x, *unit.parameters()]
    ctx = call_context(x, module=unit)
    if mix == 'both':
        fused = gate_units.spatial_planes_triton(unit, ctx, x)
        plain = unit.plain_forward(x)
    else:  # a benchmark's mix: the sum's second term left out

        def local(unit, value):
            return unit.dwconv2(value)

        fused = gate_units.spatial_planes_triton(unit, ctx, x, mix=local)
        plain = gate_units.spatial_planes(unit, ctx, x, mix=local)
    grads = torch.autograd.grad(fused.sum(), params, allow_unused=True)
    expected = torch.autograd.grad(plain.sum(), params, allow_unused=True)
    torch.testing.assert_close(fused, plain)
    for a, b in zip(grads, expected):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    'layer,name',
    [(lambda: ChannelBGU(8), 'Triton gated GELU'),
     (lambda: SpatialBGU(8, 9), 'channel-major planes, Triton gated sum')])
def test_the_triton_kernels_are_offered_only_when_asked_for(layer, name):
    names = [impl.name for impl in layer().compute.candidates]
    with triton_kernels.kernels(False):
        assert name not in [impl.name for impl in layer().compute.candidates]
    with triton_kernels.kernels(True):
        unit = layer()
    assert triton_kernels.enabled() == (name in names)
    offered = [impl.name for impl in unit.compute.candidates]
    assert (name in offered) == triton_kernels.AVAILABLE
    # and taken on CUDA only, eagerly
    cuda = Context('', False, 'cuda', torch.bfloat16, True)
    assert registry.eager_cuda(cuda)
    assert not registry.eager_cuda(cuda._replace(device='cpu'))
    assert not registry.eager_cuda(cuda._replace(tracer='dynamo'))
    # the kernels compute in float32: a float64 model keeps its plain paths
    assert registry.eager_cuda(cuda._replace(dtype=torch.float32))
    assert not registry.eager_cuda(cuda._replace(dtype=torch.float64))


# -- training: what is kept for the backward pass -----------------------------

N, C, H, W = 2, 8, 12, 20


def block_case(fast=True):
    torch.manual_seed(0)
    block = ParCNetV2Block(
        C, 23, 'interpolate', 'matmul', fast_paths=fast).double().train()
    x = torch.randn(N, H, W, C, dtype=torch.float64, requires_grad=True)
    return block, x


@pytest.fixture
def plain_toeplitz(monkeypatch):
    """Switch the Toeplitz products to plain operators, whose matrices
    autograd keeps (as while compiling)."""

    def switch():
        monkeypatch.setattr(
            matmul_module._ToeplitzProduct, 'apply',
            lambda planes, k_h, k_w: matmul_module.toeplitz_product(
                planes, k_h, k_w)[0])

    return switch


def kept_units(block, x):
    """Sizes of the large tensors (half a map or more) autograd keeps for the
    backward pass, in maps of N x C x H x W, outside the input and
    parameters."""
    present = {
        t.untyped_storage().data_ptr()
        for t in (x, *block.parameters())
    }
    kept = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in present:
            kept[storage.data_ptr()] = storage.nbytes() / (N * C * H * W * 8)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        out = block(x)
    return sorted(round(u, 3) for u in kept.values() if u >= .5), out


def test_block_gradients_equal_the_plain_ops(plain_toeplitz):
    grads = []
    for fast in (True, False):
        if not fast:
            plain_toeplitz()
        block, x = block_case(fast)
        out = block(x)
        out.backward(torch.cos(out.detach()))
        grads.append([x.grad] + [p.grad for p in block.parameters()])
    for new, plain in zip(*grads):
        torch.testing.assert_close(new, plain, rtol=1e-10, atol=1e-10)


def test_block_keeps_a_third_less_for_the_backward_pass(
        monkeypatch, plain_toeplitz):
    # the fused channel norm (what the written-out one of older PyTorch
    # keeps is not what this test is about)
    monkeypatch.setattr(norm, 'LAYER_NORM_IS_EXACT', True)
    new, _ = kept_units(*block_case())
    # norm1's output, the GELU'd value planes (the oversized convolution's
    # input), its horizontal pass, its output plus the 7x7 branch, the sum
    # after the spatial unit, norm2's output (1 map each); pwconv1's output
    # (2: gate and value); fc1's output (5: two halves of 2.5C)
    assert new == [1] * 6 + [2, 5]
    plain_toeplitz()
    plain, _ = kept_units(*block_case(fast=False))
    # and on top of those: the spatial product, GELU(gate) and the channel
    # product (2.5 each), the Toeplitz matrices, vertical (C H^2) and
    # horizontal (C W^2; those of half a map or more), and the value maps
    # copied into planes (the plain forward's convolutions write
    # channels-last memory; the fast form's projection writes planes
    # directly)
    toeplitz = [
        u for u in (round(C * H * H / (N * C * H * W), 3),
                    round(C * W * W / (N * C * H * W), 3)) if u >= .5
    ]
    assert plain == sorted(new + [1, 2.5, 2.5, 1] + toeplitz)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_block_on_cuda_equals_the_cpu():
    # on CUDA the channel unit takes its rows at once, on the CPU in blocks
    block, x = block_case()
    results = []
    for device in ('cpu', 'cuda'):
        moved = copy.deepcopy(block).to(device)
        inputs = x.detach().to(device).requires_grad_(True)
        out = moved(inputs)
        out.backward(torch.cos(out.detach()))
        results.append([out, inputs.grad] +
                       [p.grad for p in moved.parameters()])
    for on_cpu, on_cuda in zip(*results):
        torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-9, atol=1e-9)
