import pytest
import torch
import torch.nn.functional as F

from mmparcnet.models.layers.oversized_conv import (
    _cached_interpolation_matrix, _resize_1d, _resize_by_matrix,
    oversized_conv, resize_kernel, stage_map_sizes, stored_kernel_lengths)


def loop_reference(x, k_h, k_w):
    """The paper's formula written as loops over offsets: every output row
    sums all input rows weighted by the tap for their offset (kernel centre
    at index H-1), then the same along the width."""
    n, c, h, w = x.shape
    k_h, k_w = k_h.reshape(c, -1), k_w.reshape(c, -1)
    assert k_h.shape[1] == 2 * h - 1 and k_w.shape[1] == 2 * w - 1
    y = torch.zeros_like(x)
    for i in range(h):
        for t in range(h):
            y[:, :, i, :] += k_h[:, t - i + h - 1, None] * x[:, :, t, :]
    z = torch.zeros_like(x)
    for j in range(w):
        for t in range(w):
            z[:, :, :, j] += k_w[:, t - j + w - 1, None] * y[:, :, :, t]
    return z


def test_stored_kernel_lengths_match_published():
    assert stored_kernel_lengths(224) == (111, 55, 27, 13)
    assert stored_kernel_lengths(64) == (31, 15, 7, 3)
    assert stage_map_sizes(224) == (56, 28, 14, 7)


@pytest.mark.parametrize('h,w', [(5, 7), (1, 4), (6, 1), (1, 1), (9, 9)])
def test_interpolate_mode_is_the_paper_formula(h, w):
    torch.manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    k_h = torch.randn(3, 1, 2 * h - 1, 1, dtype=torch.float64)
    k_w = torch.randn(3, 1, 1, 2 * w - 1, dtype=torch.float64)
    out = oversized_conv(x, k_h, k_w, mode='interpolate', impl='direct')
    torch.testing.assert_close(out, loop_reference(x, k_h, k_w))


def test_resize_kernel_hand_computed():
    # taps 0, 1, 4 at positions 0, .5, 1 resized to 5 taps (align_corners):
    # positions 0, .25, .5, .75, 1 -> 0, .5, 1, 2.5, 4
    k = torch.tensor([0., 1., 4.]).reshape(1, 1, 3, 1)
    resized = resize_kernel(k, 5, vertical=True)
    assert resized.shape == (1, 1, 5, 1)
    torch.testing.assert_close(resized.flatten(),
                               torch.tensor([0., .5, 1., 2.5, 4.]))
    horizontal = resize_kernel(k.reshape(1, 1, 1, 3), 5, vertical=False)
    assert horizontal.shape == (1, 1, 1, 5)
    torch.testing.assert_close(horizontal.flatten(), resized.flatten())


def test_resize_kernel_matches_reference_bilinear_call():
    k = torch.randn(4, 1, 13, 1)
    expected = F.interpolate(k, [21, 1], mode='bilinear', align_corners=True)
    torch.testing.assert_close(resize_kernel(k, 21, vertical=True), expected)
    expected = F.interpolate(k, [1, 1], mode='bilinear', align_corners=True)
    torch.testing.assert_close(resize_kernel(k, 1, vertical=True), expected)


@pytest.mark.parametrize('taps,length', [(13, 21), (111, 223), (223, 111),
                                         (5, 5), (1, 7), (9, 1), (2, 3)])
def test_resize_by_matrix_equals_interpolate_in_values_and_gradients(
        taps, length):
    # the form every device but the CPU takes (CUDA's upsample backward is
    # not deterministic)
    torch.manual_seed(0)
    kernel = torch.randn(6, taps, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, length, dtype=torch.float64)
    expected = F.interpolate(
        kernel[:, None], size=length, mode='linear', align_corners=True)
    expected = expected[:, 0]
    resized = _resize_by_matrix(kernel, length)
    torch.testing.assert_close(resized, expected, rtol=0, atol=1e-12)
    grad, = torch.autograd.grad(resized, kernel, upstream)
    grad_expected, = torch.autograd.grad(expected, kernel, upstream)
    torch.testing.assert_close(grad, grad_expected, rtol=0, atol=1e-12)


def test_resize_by_matrix_keeps_the_kernel_type_under_autocast():
    kernel = torch.randn(4, 111)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        resized = _resize_by_matrix(kernel, 223)
    assert resized.dtype == torch.float32
    expected = F.interpolate(
        kernel[:, None], size=223, mode='linear', align_corners=True)
    torch.testing.assert_close(resized, expected[:, 0])


def test_resize_matrix_made_in_inference_mode_serves_training():
    _cached_interpolation_matrix.cache_clear()
    kernel = torch.randn(4, 17, requires_grad=True)
    with torch.inference_mode():
        _resize_by_matrix(kernel.detach(), 31)  # fills the cache
    _resize_by_matrix(kernel, 31).sum().backward()  # saves it for backward
    assert kernel.grad is not None


def test_resize_matrix_cache_keeps_real_tensors_only():
    # a tracer's fake tensors must not be kept for later real calls
    from torch._subclasses.fake_tensor import FakeTensorMode
    _cached_interpolation_matrix.cache_clear()
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(torch.randn(4, 13))
        assert _resize_by_matrix(fake, 21).shape == (4, 21)
    assert _cached_interpolation_matrix.cache_info().currsize == 0
    kernel = torch.randn(4, 13)
    resized = _resize_by_matrix(kernel, 21)
    assert _cached_interpolation_matrix.cache_info().currsize == 1
    assert type(resized) is torch.Tensor
    expected = F.interpolate(
        kernel[:, None], size=21, mode='linear', align_corners=True)
    torch.testing.assert_close(resized, expected[:, 0])


def test_resize_off_the_cpu_has_no_nondeterministic_backward():
    # a device that is not the CPU (meta: shapes only) takes the matrix
    # product; upsample_linear1d's CUDA backward would refuse to run under
    # torch.use_deterministic_algorithms(True)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    kernel = torch.randn(8, 13, device='meta', requires_grad=True)
    with Record() as record:
        _resize_1d(kernel, 21).sum().backward()
    assert not [op for op in record.ops if 'upsample' in op], record.ops
    assert any('mm' in op for op in record.ops)
    on_cpu = torch.randn(8, 13, requires_grad=True)
    with Record() as record:
        _resize_1d(on_cpu, 21).sum().backward()
    assert any('upsample_linear1d' in op for op in record.ops)


def test_fixed_equals_interpolate_at_stored_size():
    x = torch.randn(1, 4, 8, 8)
    k_h, k_w = torch.randn(4, 1, 15, 1), torch.randn(4, 1, 1, 15)
    torch.testing.assert_close(
        oversized_conv(x, k_h, k_w, 'fixed'),
        oversized_conv(x, k_h, k_w, 'interpolate'))


def test_fixed_mode_is_local_on_large_inputs():
    # a K-tap kernel reaches K//2 rows away in fixed mode, everything in
    # interpolate mode
    x = torch.zeros(1, 1, 20, 20)
    x[0, 0, 0, 0] = 1
    k_h, k_w = torch.ones(1, 1, 5, 1), torch.ones(1, 1, 1, 5)
    fixed = oversized_conv(x, k_h, k_w, 'fixed')
    assert fixed[0, 0, 2, 2] == 1 and fixed[0, 0, 3, 0] == 0
    assert (oversized_conv(x, k_h, k_w, 'interpolate') > 0).all()


def test_bad_mode_and_impl_raise():
    x, k = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 5, 1)
    with pytest.raises(ValueError, match='kernel mode'):
        oversized_conv(x, k, k.transpose(2, 3), mode='global')
    with pytest.raises(ValueError, match='implementation'):
        oversized_conv(x, k, k.transpose(2, 3), impl='cuda-magic')


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_resize_by_index_arithmetic_keeps_the_taps_in_half_precision(dtype):
    # the path compilers and the dynamo exporter take: positions must not
    # be rounded to the kernel's type (a 111-tap kernel in bf16 landed a
    # whole tap off)
    from mmparcnet.models.layers.oversized_conv import _resize_taps
    torch.manual_seed(0)
    kernel = torch.randn(4, 111, dtype=torch.float64)
    exact = F.interpolate(
        kernel[:, None], size=223, mode='linear', align_corners=True)[:, 0]
    resized = _resize_taps(kernel.to(dtype), 223).double()
    # the kernel in this type, resized in float32 and rounded back
    rounded = F.interpolate(
        kernel.to(dtype).float()[:, None],
        size=223,
        mode='linear',
        align_corners=True)[:, 0].to(dtype).double()
    assert (resized - exact).abs().max() <= 2 * (rounded - exact).abs().max()
