import pytest
import torch
import torch.nn.functional as F

from mmparcnet.models.layers.oversized_conv import (oversized_conv,
                                                    resize_kernel,
                                                    stage_map_sizes,
                                                    stored_kernel_lengths)


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
