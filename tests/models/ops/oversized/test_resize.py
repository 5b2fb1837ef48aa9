"""The kernel resize: hand-computed, the reference call, and each of its
forms against ``F.interpolate``."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmparcnet.models.ops.oversized import resize
from mmparcnet.models.ops.oversized.resize import (resize_1d, resize_by_index,
                                                   resize_by_matrix,
                                                   resize_kernel)


def interpolated(kernel, length):
    return F.interpolate(
        kernel[:, None], size=length, mode='linear', align_corners=True)[:, 0]


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


@pytest.mark.parametrize('form', [resize_by_matrix, resize_by_index])
@pytest.mark.parametrize('taps,length', [(13, 21), (111, 223), (223, 111),
                                         (5, 5), (1, 7), (9, 1), (2, 3)])
def test_each_form_equals_interpolate_in_values_and_gradients(
        form, taps, length):
    torch.manual_seed(0)
    kernel = torch.randn(6, taps, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, length, dtype=torch.float64)
    expected = interpolated(kernel, length)
    resized = form(kernel, length)
    torch.testing.assert_close(resized, expected, rtol=0, atol=1e-12)
    grad, = torch.autograd.grad(resized, kernel, upstream)
    grad_expected, = torch.autograd.grad(expected, kernel, upstream)
    torch.testing.assert_close(grad, grad_expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('taps,length', [(13, 21), (5, 5), (1, 7), (9, 1)])
def test_resize_by_index_along_a_kernels_own_axis(taps, length):
    # the layouts the oversized convolution stores, (C, 1, K, 1) and
    # (C, 1, 1, K), resized where they are: a fresh tensor, not a view
    torch.manual_seed(0)
    kernel = torch.randn(6, taps, dtype=torch.float64)
    expected = interpolated(kernel, length)
    vertical = resize_by_index(kernel.reshape(6, 1, taps, 1), length, dim=-2)
    horizontal = resize_by_index(kernel.reshape(6, 1, 1, taps), length, dim=-1)
    assert vertical.shape == (6, 1, length, 1)
    assert horizontal.shape == (6, 1, 1, length)
    for resized in (vertical, horizontal):
        assert not resized._is_view()
        torch.testing.assert_close(
            resized.reshape(6, length), expected, rtol=0, atol=1e-12)


def test_resize_by_matrix_keeps_the_kernel_type_under_autocast():
    torch.manual_seed(0)
    kernel = torch.randn(4, 111)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        resized = resize_by_matrix(kernel, 223)
    assert resized.dtype == torch.float32
    # float32, not bf16 (whose error here is about 1e-2); the positions are
    # float64 here, float32 in F.interpolate: up to a tap's difference
    # times 1e-5 apart
    torch.testing.assert_close(
        resized, interpolated(kernel, 223), rtol=0, atol=1e-4)


def test_resize_matrix_made_in_inference_mode_serves_training():
    resize._cached_interpolation_matrix.cache_clear()
    kernel = torch.randn(4, 17, requires_grad=True)
    with torch.inference_mode():
        resize_by_matrix(kernel.detach(), 31)  # fills the cache
    resize_by_matrix(kernel, 31).sum().backward()  # saves it for backward
    assert kernel.grad is not None


def test_resize_matrix_cache_keeps_real_tensors_only():
    # a tracer's fake tensors must not be kept for later real calls
    from torch._subclasses.fake_tensor import FakeTensorMode
    resize._cached_interpolation_matrix.cache_clear()
    with FakeTensorMode() as mode:
        fake = mode.from_tensor(torch.randn(4, 13))
        assert resize_by_matrix(fake, 21).shape == (4, 21)
    assert resize._cached_interpolation_matrix.cache_info().currsize == 0
    kernel = torch.randn(4, 13)
    resized = resize_by_matrix(kernel, 21)
    assert resize._cached_interpolation_matrix.cache_info().currsize == 1
    assert type(resized) is torch.Tensor
    torch.testing.assert_close(resized, interpolated(kernel, 21))


class Record(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_resize_off_the_cpu_has_no_nondeterministic_backward():
    # a device that is not the CPU (meta: shapes only) takes the matrix
    # product; upsample_linear1d's CUDA backward would refuse to run under
    # torch.use_deterministic_algorithms(True)
    kernel = torch.randn(8, 13, device='meta', requires_grad=True)
    with Record() as record:
        resize_1d(kernel, 21).sum().backward()
    assert not [op for op in record.ops if 'upsample' in op], record.ops
    assert any('mm' in op for op in record.ops)
    on_cpu = torch.randn(8, 13, requires_grad=True)
    with Record() as record:
        resize_1d(on_cpu, 21).sum().backward()
    assert any('upsample_linear1d' in op for op in record.ops)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_resize_by_index_arithmetic_keeps_the_taps_in_half_precision(dtype):
    # the form compilers and the dynamo exporter take: positions must not
    # be rounded to the kernel's type (a 111-tap kernel in bf16 landed a
    # whole tap off)
    torch.manual_seed(0)
    kernel = torch.randn(4, 111, dtype=torch.float64)
    exact = interpolated(kernel, 223)
    resized = resize_by_index(kernel.to(dtype), 223).double()
    # the kernel in this type, resized in float32 and rounded back
    rounded = interpolated(kernel.to(dtype).float(), 223).to(dtype).double()
    assert (resized - exact).abs().max() <= 2 * (rounded - exact).abs().max()
