"""What training keeps for the backward pass: the gated projections and the
Toeplitz products against the plain ops, in values, gradients and memory."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mmparcnet.models.backbones.parcnetv2 as parcnetv2
import mmparcnet.models.layers.oversized_conv as oversized_conv_module
import mmparcnet.models.layers.pointwise as pointwise
from mmparcnet.models.backbones.parcnetv2 import ParCNetV2Block
from mmparcnet.models.layers.gated_linear import (gated_linear,
                                                  gated_linear_applies)
from mmparcnet.models.layers.oversized_conv import oversized_conv


def plain_gated_linear(value, gate, weight, bias, activation):
    gate = F.gelu(gate) if activation == 'gelu' else gate
    return F.linear(value * gate, weight, bias)


def layouts(rows, width, generator):
    """(value, gate) pairs as the gate units pass them: halves of one wider
    tensor (the channel unit), transposed planes (the spatial unit)."""
    wide = torch.randn(
        rows, 2 * width, generator=generator, dtype=torch.float64)
    planes = torch.randn(
        2, width, rows, generator=generator, dtype=torch.float64)
    return {
        'halves': wide.chunk(2, dim=1),
        'planes': (planes[0].t(), planes[1].t())
    }


@pytest.mark.parametrize('activation', [None, 'gelu'])
@pytest.mark.parametrize('with_bias', [False, True])
@pytest.mark.parametrize('layout', ['halves', 'planes'])
@pytest.mark.parametrize('block_rows', [None, 5])  # 37 rows: 8 blocks
def test_gated_linear_equals_the_plain_ops(activation, with_bias, layout,
                                           block_rows):
    generator = torch.Generator().manual_seed(0)
    value, gate = layouts(37, 6, generator)[layout]
    weight = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    bias = (
        torch.randn(5, generator=generator, dtype=torch.float64)
        if with_bias else None)
    inputs = [
        t.detach().clone().requires_grad_(True)
        for t in (value, gate, weight) + ((bias, ) if with_bias else ())
    ]
    grad = torch.randn(37, 5, generator=generator, dtype=torch.float64)
    results = []
    for fn in (gated_linear, plain_gated_linear):
        args = [t.detach().requires_grad_(True) for t in inputs]
        out = fn(*args[:3], args[3] if with_bias else None, activation,
                 *([block_rows] if fn is gated_linear else []))
        out.backward(grad)
        results.append([out] + [a.grad for a in args])
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    # value's and gate's gradients laid out as the rows are (channel-major
    # planes stay so: no transposing copy later)
    strides = (1, 37) if layout == 'planes' else (6, 1)
    assert [g.stride() for g in results[0][1:3]] == [strides, strides]


def test_gated_linear_computes_only_the_gradients_asked_for():
    value = torch.randn(4, 3, requires_grad=True)
    gate, weight = torch.randn(4, 3), torch.randn(2, 3)
    gated_linear(value, gate, weight, activation='gelu').sum().backward()
    expected = torch.ones(4, 2) @ weight * F.gelu(gate)
    torch.testing.assert_close(value.grad, expected)


def test_gated_linear_keeps_its_inputs_not_the_product():
    value, gate, weight = (
        torch.randn(64, 32, requires_grad=True) for _ in range(3))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: kept.append(t.untyped_storage().data_ptr()) or t,
            lambda t: t):
        gated_linear(value, gate, weight, activation='gelu')
    assert sorted(kept) == sorted(t.untyped_storage().data_ptr()
                                  for t in (value, gate, weight))


def test_gated_linear_under_bf16_autocast_computes_in_bf16():
    generator = torch.Generator().manual_seed(0)
    value, gate = torch.randn(2, 50, 16, generator=generator)
    weight = torch.randn(8, 16, generator=generator, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = gated_linear(value, gate, weight, activation='gelu')
    assert out.dtype == torch.bfloat16
    expected = plain_gated_linear(value, gate, weight, None, 'gelu')
    assert ((out.float() - expected).norm() / expected.norm()) < 1e-2
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32


def test_gated_linear_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="unknown gate activation 'relu'"):
        gated_linear(
            torch.ones(1, 1),
            torch.ones(1, 1),
            torch.ones(1, 1),
            activation='relu')


def test_gated_linear_applies_only_where_autograd_records():
    x, weight = torch.ones(2, 2), torch.ones(2, 2, requires_grad=True)
    assert gated_linear_applies(x, weight)
    assert not gated_linear_applies(x, weight.detach())
    with torch.no_grad():
        assert not gated_linear_applies(x, weight)


# -- the block ----------------------------------------------------------------

N, C, H, W = 2, 8, 12, 20


@pytest.fixture
def plain_ops(monkeypatch):
    """Switch the block to the plain ops: the gate units' products and the
    Toeplitz matrices kept by autograd, as while compiling."""

    def switch():
        monkeypatch.setattr(pointwise, 'gated_linear_applies',
                            lambda *tensors: False)
        monkeypatch.setattr(oversized_conv_module, 'is_compiling',
                            lambda: True)

    return switch


def block_case():
    torch.manual_seed(0)
    block = ParCNetV2Block(C, 23, 'interpolate', 'matmul').double().train()
    x = torch.randn(N, H, W, C, dtype=torch.float64, requires_grad=True)
    return block, x


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


def test_block_gradients_equal_the_plain_ops(plain_ops):
    grads = []
    for switch in (lambda: None, plain_ops):
        switch()
        block, x = block_case()
        out = block(x)
        out.backward(torch.cos(out.detach()))
        grads.append([x.grad] + [p.grad for p in block.parameters()])
    for new, plain in zip(*grads):
        torch.testing.assert_close(new, plain, rtol=1e-10, atol=1e-10)


def test_block_keeps_a_third_less_for_the_backward_pass(
        plain_ops, monkeypatch):
    # the fused channel norm (what the written-out one of older PyTorch
    # keeps is not what this test is about)
    monkeypatch.setattr(parcnetv2, 'LAYER_NORM_IS_EXACT', True)
    new, _ = kept_units(*block_case())
    # norm1's output, the GELU'd value planes (the oversized convolution's
    # input), its horizontal pass, its output plus the 7x7 branch, the sum
    # after the spatial unit, norm2's output (1 map each); pwconv1's output
    # (2: gate and value); fc1's output (5: two halves of 2.5C)
    assert new == [1] * 6 + [2, 5]
    plain_ops()
    plain, _ = kept_units(*block_case())
    # and on top of those: the spatial product, GELU(gate) and the channel
    # product (2.5 each), the vertical Toeplitz matrices repeated per image
    # (C N H^2) and the horizontal ones (C W^2)
    toeplitz = sorted([
        round(C * N * H * H / (N * C * H * W), 3),
        round(C * W * W / (N * C * H * W), 3)
    ])
    assert plain == sorted(new + [1, 2.5, 2.5] + toeplitz)


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


def test_toeplitz_product_of_a_float32_map_under_bf16_autocast():
    # autocast runs the products in bf16; the backward pass must agree
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 13, requires_grad=True)
    k_h = torch.randn(4, 1, 11, 1, requires_grad=True)
    k_w = torch.randn(4, 1, 1, 11, requires_grad=True)
    reference = oversized_conv(x, k_h, k_w, 'interpolate', 'direct')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = oversized_conv(x, k_h, k_w, 'interpolate', 'matmul')
    assert out.dtype == torch.bfloat16
    assert ((out.float() - reference).norm() / reference.norm()) < 1e-2
    out.float().sum().backward()
    assert [t.grad.dtype for t in (x, k_h, k_w)] == [torch.float32] * 3
    expected = torch.autograd.grad(reference.sum(), (x, k_h, k_w))
    for actual, wanted in zip((x.grad, k_h.grad, k_w.grad), expected):
        assert ((actual - wanted).norm() / wanted.norm()) < 2e-2
