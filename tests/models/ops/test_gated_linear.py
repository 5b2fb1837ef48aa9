"""The gated projection that keeps its inputs rather than their product
for the backward pass, against the plain ops."""
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from mmparcnet.models.ops.gated_linear import gated_linear, gated_linear_halves


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


@pytest.mark.parametrize('activation', [None, 'gelu'])
@pytest.mark.parametrize('block_rows', [None, 5])
@pytest.mark.parametrize('frozen', [None, 'hidden', 'weight', 'bias'])
def test_gated_linear_halves_equals_the_plain_ops(activation, block_rows,
                                                  frozen):
    generator = torch.Generator().manual_seed(1)
    hidden, weight, bias = (
        torch.randn(*shape, generator=generator, dtype=torch.float64)
        for shape in ((37, 12), (5, 6), (5, )))
    grad = torch.randn(37, 5, generator=generator, dtype=torch.float64)
    results = []
    for halves in (True, False):
        args = [
            t.detach().requires_grad_(name != frozen)
            for name, t in zip(('hidden', 'weight', 'bias'), (hidden, weight,
                                                              bias))
        ]
        if halves:
            out = gated_linear_halves(*args, activation, block_rows)
        else:
            out = plain_gated_linear(*args[0].chunk(2, dim=1), *args[1:],
                                     activation)
        out.backward(grad)
        results.append([out] + [a.grad for a in args])
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_gated_linear_halves_writes_one_gradient_without_concatenating():
    hidden = torch.randn(8, 6, requires_grad=True)
    out = gated_linear_halves(hidden, torch.randn(3, 3), activation='gelu')
    with profile() as prof:
        out.sum().backward()
    ops = {event.name for event in prof.events()}
    assert 'aten::gelu_backward' in ops and 'aten::cat' not in ops
    assert hidden.grad.shape == (8, 6) and hidden.grad.is_contiguous()


@pytest.mark.parametrize('block_rows', [None, 3])
def test_gated_linear_writes_the_weights_gradient_by_the_first_product(
        block_rows):
    """The weight's gradient is the first block's product, the others
    accumulated into it: no zero-filled tensor (with one block, a GPU's
    whole GEMM, one product)."""
    hidden = torch.randn(8, 6, requires_grad=True)
    weight = torch.randn(3, 3, requires_grad=True)
    out = gated_linear_halves(
        hidden, weight, activation='gelu', block_rows=block_rows)
    with profile() as prof:
        out.sum().backward()
    ops = [event.name for event in prof.events()]
    blocks = 1 if block_rows is None else 3
    assert ops.count('aten::addmm_') == blocks - 1
    assert 'aten::zeros_like' not in ops and 'aten::zero_' not in ops
    value, gate = hidden.detach().chunk(2, dim=1)
    torch.testing.assert_close(weight.grad,
                               torch.ones(8, 3).t() @ (value * F.gelu(gate)))


def test_gated_linear_halves_without_a_bias():
    hidden = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(9, 3, dtype=torch.float64)
    gated_linear_halves(hidden, weight, activation='gelu').backward(grad)
    actual = hidden.grad, weight.grad
    hidden.grad = weight.grad = None
    plain_gated_linear(*hidden.chunk(2, dim=1), weight, None,
                       'gelu').backward(grad)
    for a, e in zip(actual, (hidden.grad, weight.grad)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('block_rows', [0, -1])
def test_gated_linear_rejects_blocks_without_rows(block_rows):
    with pytest.raises(ValueError, match='block_rows must be a positive'):
        gated_linear(
            torch.ones(2, 1),
            torch.ones(2, 1),
            torch.ones(1, 1),
            block_rows=block_rows)
    with pytest.raises(ValueError, match='block_rows must be a positive'):
        gated_linear_halves(
            torch.ones(2, 2), torch.ones(1, 1), block_rows=block_rows)


def test_gated_linear_halves_needs_an_even_width():
    with pytest.raises(ValueError, match='even number of columns, got 5'):
        gated_linear_halves(torch.ones(2, 5), torch.ones(1, 2))


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
