"""Input sizes, aspect ratios and values a detector or segmentor may feed."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmparcnet.models import ParCNetV2

SMALL = dict(depths=[1, 1, 1, 1], dims=[4, 8, 12, 16])


def expected_sizes(size):
    sizes = [(size - 3) // 4 + 1]
    for _ in range(3):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(3, 2000),
    width=st.integers(3, 2000),
    batch=st.integers(1, 2),
    impl=st.sampled_from(['auto', 'fft']))
def test_any_size_from_3_to_2000(height, width, batch, impl):
    if height * width > 600_000:
        width = max(3, 600_000 // height)  # keep the CPU time bounded
    model = ParCNetV2(SMALL, oversized_conv_impl=impl).eval()
    with torch.no_grad():
        feats = model(torch.randn(batch, 3, height, width))
    for feat, h, w, c in zip(feats, expected_sizes(height),
                             expected_sizes(width), SMALL['dims']):
        assert feat.shape == (batch, c, h, w)
        assert torch.isfinite(feat).all()


@pytest.mark.parametrize('size', [(3, 2000), (2000, 3), (5, 1333), (1333, 5)])
def test_extreme_aspect_ratios(size):
    model = ParCNetV2(SMALL).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, *size))
    assert feats[-1].shape[-2:] == (expected_sizes(size[0])[-1],
                                    expected_sizes(size[1])[-1])


def test_batch_elements_are_independent_with_padding():
    # detectors pad a batch to one size; the padded image's own pixels see
    # the zero padding as image content (as in the reference), so the
    # padded result equals running the padded image alone
    model = ParCNetV2(SMALL).eval()
    small, large = torch.randn(1, 3, 40, 56), torch.randn(1, 3, 64, 64)
    padded = torch.zeros(1, 3, 64, 64)
    padded[..., :40, :56] = small
    with torch.no_grad():
        batch = model(torch.cat([padded, large]))
        alone = model(padded)
        other = model(large)
    for b, a, o in zip(batch, alone, other):
        torch.testing.assert_close(b[:1], a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b[1:], o, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('impl', ['direct', 'fft'])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nan_and_inf_propagate_without_crashing(impl, value):
    model = ParCNetV2(SMALL, oversized_conv_impl=impl).eval()
    x = torch.randn(2, 3, 48, 48)
    x[1, :, 5, 7] = value
    with torch.no_grad():
        feats = model(x)
    assert all(torch.isfinite(f[0]).all() for f in feats)
    assert not torch.isfinite(feats[-1][1]).all()


@pytest.mark.parametrize('size', [(1, 1), (2, 40), (40, 2)])
def test_images_smaller_than_the_stem_raise_clearly(size):
    with pytest.raises(ValueError, match='at least 3x3'):
        ParCNetV2(SMALL)(torch.randn(1, 3, *size))


def test_image_smaller_than_the_network_stride():
    # 3x3 .. 31x31 inputs: every stage has a 1x1 map at the end
    model = ParCNetV2(SMALL).eval()
    for size in (3, 7, 17, 31):
        feats = model(torch.randn(1, 3, size, size))
        assert feats[-1].shape[-2:] == (1, 1)


@pytest.mark.parametrize('gap', [False, True])
@pytest.mark.parametrize('fast_paths', [True, False])
@pytest.mark.parametrize('training', [False, True])
def test_an_empty_batch_gives_empty_outputs_of_a_batch_s_shape(
        gap, fast_paths, training):
    # an empty batch (a caller that filtered every image out, say):
    # the outputs are what one image's would be, with no rows
    model = ParCNetV2(
        SMALL,
        out_indices=(3, ) if gap else (0, 1, 2, 3),
        gap_before_final_norm=gap,
        fast_paths=fast_paths).train(training)
    one = model(torch.randn(1, 3, 61, 90))
    empty = model(torch.randn(0, 3, 61, 90))
    assert len(empty) == len(one)
    for e, o in zip(empty, one):
        assert e.shape == (0, ) + o.shape[1:]
        assert e.dtype == o.dtype
    if training:
        # computed by the layers, not made up: every parameter is in the
        # graph and gets a gradient (zero), as distributed training's
        # gradient reduction expects of every rank
        sum(e.sum() for e in empty).backward()
        used = [p for p in model.parameters() if p.requires_grad]
        assert all(p.grad is not None for p in used)
        assert all(not p.grad.any() for p in used)
