"""The spatial unit's first projection as two halves for training, against
the plain 1x1 convolution and split."""
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import profile

from mmparcnet.models.ops import split_projection
from mmparcnet.models.ops.gate_units import planes_by_gemm
from mmparcnet.models.ops.split_projection import split_planes_by_gemm


def activated(halves, activation):
    gate, value = halves
    return gate, (F.gelu(value) if activation == 'gelu' else value)


def plain_halves(conv, x, activation=None):
    return activated(conv(x.permute(0, 3, 1, 2)).chunk(2, dim=1), activation)


def gemm_halves(conv, x, activation=None):
    """The unfused form the training path had before: one product, then the
    split (autograd concatenates the halves' gradients), then GELU."""
    return activated(planes_by_gemm(conv, x).chunk(2, dim=1), activation)


def fused(activation):
    return functools.partial(split_planes_by_gemm, activation=activation)


def conv_and_input(bias, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 8, 1, bias=bias).double()
    return conv, torch.randn(2, 3, 5, 6, dtype=torch.float64)


def gradients(halves_of, conv, x, grads):
    conv.zero_grad()
    x = x.detach().requires_grad_(True)
    halves = halves_of(conv, x)
    torch.autograd.backward(
        [h for h, g in zip(halves, grads) if g is not None],
        [g for g in grads if g is not None])
    return list(halves) + [x.grad] + [p.grad for p in conv.parameters()]


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('used', ['both', 'gate', 'value'])
@pytest.mark.parametrize('grad_layout', ['NCHW', 'channel-major'])
@pytest.mark.parametrize('activation', [None, 'gelu'])
def test_split_planes_equal_the_convolution_and_split(bias, used, grad_layout,
                                                      activation):
    conv, x = conv_and_input(bias)
    torch.manual_seed(1)
    grads = []
    for half in ('gate', 'value'):
        grad = torch.randn(2, 4, 3, 5, dtype=torch.float64)
        if grad_layout == 'channel-major':
            grad = grad.transpose(0, 1).contiguous().transpose(0, 1)
        grads.append(grad if used in (half, 'both') else None)
    actual = gradients(fused(activation), conv, x, grads)
    expected = gradients(
        functools.partial(plain_halves, activation=activation), conv, x, grads)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('frozen', ['input', 'weight', 'bias'])
@pytest.mark.parametrize('activation', [None, 'gelu'])
def test_split_planes_give_the_gradients_asked_for(frozen, activation):
    conv, x = conv_and_input(True)
    inputs = {'input': x, 'weight': conv.weight, 'bias': conv.bias}
    inputs[frozen].requires_grad_(False)
    trainable = [
        t.requires_grad_(True) for name, t in inputs.items() if name != frozen
    ]
    grads = [torch.randn(2, 4, 3, 5, dtype=torch.float64) for _ in range(2)]
    results = []
    for halves_of in (fused(activation),
                      functools.partial(plain_halves, activation=activation)):
        torch.autograd.backward(list(halves_of(conv, x)), grads)
        results.append([t.grad for t in trainable])
        for t in trainable:
            t.grad = None
    assert inputs[frozen].grad is None
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('frozen', ['input', 'weight'])
@pytest.mark.parametrize('activation', [None, 'gelu'])
def test_split_planes_keep_what_the_convolution_keeps(frozen, activation):
    """Only what the gradients asked for need: the rows for the weight's,
    the weight for the input's (and GELU its input); as the unfused
    product, split and GELU keep."""
    conv, x = conv_and_input(True)
    x.requires_grad_(frozen != 'input')
    conv.weight.requires_grad_(frozen != 'weight')
    kept = []
    for halves_of in (fused(activation),
                      functools.partial(gemm_halves, activation=activation)):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: sizes.append(t.numel()) or t, lambda t: t):
            halves_of(conv, x)
        kept.append(sorted(sizes))
    expected = [x.numel()] if frozen == 'input' else [conv.weight.numel()]
    if activation:
        expected = sorted(expected + [x.numel() // 6 * 4])  # the value
    assert kept[0] == kept[1] == expected


@pytest.mark.parametrize('activation', [None, 'gelu'])
def test_split_planes_come_out_as_channel_major_views(activation):
    conv, x = conv_and_input(True)
    gate, value = split_planes_by_gemm(conv, x, activation=activation)
    assert gate.shape == value.shape == (2, 4, 3, 5)
    # (C, N, H, W) memory: the depthwise convolutions' planes
    assert gate.stride() == value.stride() == (15, 30, 5, 1)


def backward_ops(halves_of, conv, x):
    """The operators of the backward pass of ``halves_of(conv, x)``, the
    gate's gradient channel-major (as the gated projection writes it), the
    value's NCHW (as the 7x7 convolution's backward leaves it)."""
    halves = list(halves_of(conv, x.detach().requires_grad_(True)))
    grads = [
        torch.ones(4, 2, 3, 5, dtype=torch.float64).transpose(0, 1),
        torch.ones(2, 4, 3, 5, dtype=torch.float64)
    ]
    with profile() as prof:
        torch.autograd.backward(halves, grads)
    return [event.name for event in prof.events()]


def test_split_planes_take_the_gradients_back_without_concatenating():
    ops = backward_ops(split_planes_by_gemm, *conv_and_input(True))
    assert 'aten::cat' not in ops
    # only the NCHW gradient is copied to planes
    assert ops.count('aten::clone') == 1


def test_split_planes_take_gelus_gradient_back_as_planes_in_one_pass():
    """The value's gradient in NCHW memory goes through GELU's backward
    into channel-major planes: no copy after it."""
    conv, x = conv_and_input(True)
    ops = backward_ops(fused('gelu'), conv, x)
    assert ops.count('aten::gelu_backward') == 1
    assert 'aten::clone' not in ops
    # (where GELU's backward needs one layout, the gradient is copied
    # into the planes first: the two passes autograd would make)
    aligned = 0 if split_projection.GELU_BACKWARD_IS_EXACT else 1
    assert ops.count('aten::copy_') == aligned
    # against the unfused form, whose GELU backward is followed by a copy
    unfused = functools.partial(gemm_halves, activation='gelu')
    assert 'aten::clone' in backward_ops(unfused, conv, x)


def test_split_planes_gelu_where_its_backward_needs_one_layout(monkeypatch):
    """Where GELU's CPU backward is wrong across layouts (PyTorch 2.1,
    :mod:`.compat`), the gradient is laid out as the value first."""
    monkeypatch.setattr(split_projection, 'GELU_BACKWARD_IS_EXACT', False)
    test_split_planes_equal_the_convolution_and_split(True, 'both', 'NCHW',
                                                      'gelu')


def test_split_planes_refuse_an_unknown_activation():
    conv, x = conv_and_input(True)
    with pytest.raises(ValueError, match='unknown value activation'):
        split_planes_by_gemm(conv, x, activation='relu')


@pytest.mark.parametrize('activation', [None, 'gelu'])
def test_split_planes_under_bf16_autocast_compute_in_bf16(activation):
    conv, x = conv_and_input(True)
    conv.float()
    x = x.float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        gate, value = split_planes_by_gemm(conv, x, torch.bfloat16, activation)
    assert gate.dtype == value.dtype == torch.bfloat16
    expected = torch.cat(plain_halves(conv, x, activation), dim=1)
    actual = torch.cat([gate, value], dim=1).float()
    assert ((actual - expected).norm() / expected.norm()) < 1e-2
    (gate.float().sum() + value.float().sum()).backward()
    assert conv.weight.grad.dtype == torch.float32
