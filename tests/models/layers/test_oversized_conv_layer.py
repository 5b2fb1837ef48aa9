"""The oversized convolution layer is the paper's formula, in both kernel
modes, and every way of computing it gives its plain forward's numbers."""
import pytest
import torch

from mmparcnet.models.layers import OversizedConv


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


def layer_with(k_h, k_w, mode='interpolate', **kwargs):
    layer = OversizedConv(k_h.shape[0], k_h.shape[2], mode, **kwargs)
    layer = layer.to(k_h.dtype)
    with torch.no_grad():
        layer.conv_h.weight.copy_(k_h)
        layer.conv_w.weight.copy_(k_w)
    return layer


@pytest.mark.parametrize('h,w', [(5, 7), (1, 4), (6, 1), (1, 1), (9, 9)])
@pytest.mark.parametrize('impl', ['auto', 'direct', 'matmul', 'fft'])
def test_interpolate_mode_is_the_paper_formula(h, w, impl):
    # square kernels stored for the map's height, resized along the width
    torch.manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    k_h = torch.randn(3, 1, 2 * h - 1, 1, dtype=torch.float64)
    k_w = torch.randn(3, 1, 1, 2 * h - 1, dtype=torch.float64)
    layer = layer_with(k_h, k_w, impl=impl)
    resized = torch.nn.functional.interpolate(
        k_w, (1, 2 * w - 1), mode='bilinear', align_corners=True)
    with torch.no_grad():
        expected = loop_reference(x, k_h, resized)
        torch.testing.assert_close(layer.plain_forward(x), expected)
        torch.testing.assert_close(layer(x), expected)


def test_fixed_equals_interpolate_at_stored_size():
    x = torch.randn(1, 4, 8, 8)
    k_h, k_w = torch.randn(4, 1, 15, 1), torch.randn(4, 1, 1, 15)
    with torch.no_grad():
        torch.testing.assert_close(
            layer_with(k_h, k_w, 'fixed')(x),
            layer_with(k_h, k_w, 'interpolate')(x))


def test_fixed_mode_is_local_on_large_inputs():
    # a K-tap kernel reaches K//2 rows away in fixed mode, everything in
    # interpolate mode
    x = torch.zeros(1, 1, 20, 20)
    x[0, 0, 0, 0] = 1
    k_h, k_w = torch.ones(1, 1, 5, 1), torch.ones(1, 1, 1, 5)
    with torch.no_grad():
        fixed = layer_with(k_h, k_w, 'fixed')(x)
        assert fixed[0, 0, 2, 2] == 1 and fixed[0, 0, 3, 0] == 0
        assert (layer_with(k_h, k_w, 'interpolate')(x) > 0).all()


def test_the_layer_keeps_the_checkpoints_names_and_shapes():
    layer = OversizedConv(6, 13)
    assert {
        k: tuple(v.shape)
        for k, v in layer.state_dict().items()
    } == {
        'conv_h.weight': (6, 1, 13, 1),
        'conv_w.weight': (6, 1, 1, 13)
    }
    assert "impl='auto'" in repr(layer)


def test_bad_mode_and_impl_raise():
    with pytest.raises(ValueError, match='kernel_mode'):
        OversizedConv(2, 5, kernel_mode='global')
    with pytest.raises(ValueError, match='oversized_conv_impl'):
        OversizedConv(2, 5, impl='cuda-magic')
