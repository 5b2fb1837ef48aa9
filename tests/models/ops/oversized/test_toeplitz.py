"""The one Toeplitz builder, in both its forms, against the definition."""
import pytest
import torch

from mmparcnet.models.ops.oversized.toeplitz import (gather_index, toeplitz,
                                                     toeplitz_adjoint)


def brute_force_toeplitz(kernel, size):
    """T[c, i, t] = kernel[c, t - i + K // 2], zero where no tap exists."""
    channels, taps = kernel.shape
    matrix = torch.zeros(channels, size, size, dtype=kernel.dtype)
    for i in range(size):
        for t in range(size):
            if 0 <= t - i + taps // 2 < taps:
                matrix[:, i, t] = kernel[:, t - i + taps // 2]
    return matrix


@pytest.mark.parametrize('taps,size', [(7, 4), (7, 1), (3, 9), (15, 8), (1, 3),
                                       (9, 5), (13, 2)])
@pytest.mark.parametrize(
    'gathered', [False, True], ids=['strided views', 'gathered'])
def test_toeplitz_matrices_hold_the_taps_at_each_offset(taps, size, gathered):
    kernel = torch.randn(3, taps)
    built = toeplitz(kernel, size, gather=gathered)
    torch.testing.assert_close(
        built, brute_force_toeplitz(kernel, size), rtol=0, atol=0)


@pytest.mark.parametrize(
    'gathered', [False, True], ids=['strided views', 'gathered'])
def test_a_kernel_that_spans_the_map_is_used_as_it_is(gathered):
    size = 6
    kernel = torch.randn(2, 2 * size - 1, requires_grad=True)
    index = gather_index(size, kernel.device) if gathered else None
    built = toeplitz(kernel, size, spans_map=True, index=index)
    torch.testing.assert_close(built, brute_force_toeplitz(kernel, size))
    # each tap's gradient is the sum over its diagonal
    grad, = torch.autograd.grad(built.sum(), kernel)
    counts = torch.tensor([size - abs(d) for d in range(-size + 1, size)],
                          dtype=grad.dtype)
    torch.testing.assert_close(grad, counts.expand(2, -1))


@pytest.mark.parametrize('taps,size', [(7, 4), (7, 1), (3, 9), (15, 8), (1, 3),
                                       (9, 5), (13, 2), (4, 3), (6, 2),
                                       (2, 5)])
def test_toeplitz_adjoint_is_the_gradient_through_the_matrices(taps, size):
    generator = torch.Generator().manual_seed(taps * 100 + size)
    kernel = torch.randn(3, taps, generator=generator, dtype=torch.float64)
    grad = torch.randn(3, size, size, generator=generator, dtype=torch.float64)
    # independent: through the brute-force construction
    leaf = kernel.requires_grad_()
    expected, = torch.autograd.grad(
        brute_force_toeplitz(leaf, size), leaf, grad)
    actual = toeplitz_adjoint(grad, taps)
    assert actual.shape == (3, taps)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
