"""The spatial unit's first projection as two halves for training, against
the plain 1x1 convolution and split."""
import pytest
import torch
import torch.nn as nn
from torch.profiler import profile

from mmparcnet.models.ops.gate_units import planes_by_gemm
from mmparcnet.models.ops.split_projection import split_planes_by_gemm


def plain_halves(conv, x):
    return conv(x.permute(0, 3, 1, 2)).chunk(2, dim=1)


def gemm_halves(conv, x):
    """The unfused form the training path had before: one product, then the
    split (autograd concatenates the halves' gradients)."""
    return planes_by_gemm(conv, x).chunk(2, dim=1)


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
def test_split_planes_equal_the_convolution_and_split(bias, used, grad_layout):
    conv, x = conv_and_input(bias)
    torch.manual_seed(1)
    grads = []
    for half in ('gate', 'value'):
        grad = torch.randn(2, 4, 3, 5, dtype=torch.float64)
        if grad_layout == 'channel-major':
            grad = grad.transpose(0, 1).contiguous().transpose(0, 1)
        grads.append(grad if used in (half, 'both') else None)
    actual = gradients(split_planes_by_gemm, conv, x, grads)
    expected = gradients(plain_halves, conv, x, grads)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('frozen', ['input', 'weight', 'bias'])
def test_split_planes_give_the_gradients_asked_for(frozen):
    conv, x = conv_and_input(True)
    inputs = {'input': x, 'weight': conv.weight, 'bias': conv.bias}
    inputs[frozen].requires_grad_(False)
    trainable = [
        t.requires_grad_(True) for name, t in inputs.items() if name != frozen
    ]
    grads = [torch.randn(2, 4, 3, 5, dtype=torch.float64) for _ in range(2)]
    results = []
    for halves_of in (split_planes_by_gemm, plain_halves):
        torch.autograd.backward(list(halves_of(conv, x)), grads)
        results.append([t.grad for t in trainable])
        for t in trainable:
            t.grad = None
    assert inputs[frozen].grad is None
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('frozen', ['input', 'weight'])
def test_split_planes_keep_what_the_convolution_keeps(frozen):
    """Only what the gradients asked for need: the rows for the weight's,
    the weight for the input's; as the unfused product and split keep."""
    conv, x = conv_and_input(True)
    x.requires_grad_(frozen != 'input')
    conv.weight.requires_grad_(frozen != 'weight')
    kept = []
    for halves_of in (split_planes_by_gemm, gemm_halves):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: sizes.append(t.numel()) or t, lambda t: t):
            halves_of(conv, x)
        kept.append(sorted(sizes))
    assert kept[0] == kept[1] == ([x.numel()] if frozen == 'input' else
                                  [conv.weight.numel()])


def test_split_planes_come_out_as_channel_major_views():
    conv, x = conv_and_input(True)
    gate, value = split_planes_by_gemm(conv, x)
    assert gate.shape == value.shape == (2, 4, 3, 5)
    # (C, N, H, W) memory: the depthwise convolutions' planes
    assert gate.stride() == value.stride() == (15, 30, 5, 1)


def test_split_planes_take_the_gradients_back_without_concatenating():
    conv, x = conv_and_input(True)
    x.requires_grad_(True)
    gate, value = split_planes_by_gemm(conv, x)
    # the gate's gradient channel-major, as the gated projection writes it
    grad = torch.ones(4, 2, 3, 5, dtype=torch.float64).transpose(0, 1)
    with profile() as prof:
        torch.autograd.backward(
            [gate, value],
            [grad, torch.ones(2, 4, 3, 5, dtype=torch.float64)])
    ops = [event.name for event in prof.events()]
    assert 'aten::cat' not in ops
    # only the NCHW gradient is copied to planes
    assert ops.count('aten::clone') == 1


def test_split_planes_under_bf16_autocast_compute_in_bf16():
    conv, x = conv_and_input(True)
    conv.float()
    x = x.float()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        gate, value = split_planes_by_gemm(conv, x, torch.bfloat16)
    assert gate.dtype == value.dtype == torch.bfloat16
    expected = torch.cat(plain_halves(conv, x), dim=1)
    actual = torch.cat([gate, value], dim=1).float()
    assert ((actual - expected).norm() / expected.norm()) < 1e-2
    (gate.float().sum() + value.float().sum()).backward()
    assert conv.weight.grad.dtype == torch.float32
