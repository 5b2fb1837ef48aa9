"""The fast oversized convolutions (matmul, FFT) against the direct
(reference) path, in values, gradients and types, alone and in the
backbone."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmparcnet.checkpoint import load_state_into
from mmparcnet.models import ParCNetV2
from mmparcnet.models.ops.oversized import fft_size, oversized_conv

FAST = ['fft', 'matmul']


def both_paths(x, k_h, k_w, mode, grad, fast):
    results = {}
    for impl in ('direct', fast):
        tensors = [
            t.detach().clone().requires_grad_(True) for t in (x, k_h, k_w)
        ]
        out = oversized_conv(*tensors, mode, impl)
        out.backward(grad)
        results[impl] = [out.detach()] + [t.grad for t in tensors]
    return results['direct'], results[fast]


def random_case(batch,
                channels,
                height,
                width,
                taps,
                seed,
                dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return (rand(batch, channels, height, width), rand(channels, 1, taps, 1),
            rand(channels, 1, 1, taps), rand(batch, channels, height, width))


@pytest.mark.parametrize('fast', FAST)
@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    stored=st.integers(1, 20),
    mode=st.sampled_from(['interpolate', 'fixed']),
    seed=st.integers(0, 2**16))
def test_fast_path_equals_direct_values_and_gradients(fast, batch, channels,
                                                      height, width, stored,
                                                      mode, seed):
    taps = 2 * stored - 1  # stored kernels have odd length
    x, k_h, k_w, grad = random_case(batch, channels, height, width, taps, seed)
    direct, result = both_paths(x, k_h, k_w, mode, grad, fast)
    for name, a, b in zip(('out', 'x', 'k_h', 'k_w'), direct, result):
        assert a.shape == b.shape, name
        torch.testing.assert_close(
            b,
            a,
            rtol=1e-4,
            atol=1e-4 * max(1.,
                            a.abs().max().item()),
            msg=name)


@pytest.mark.parametrize('fast', FAST)
@pytest.mark.parametrize('shape', [(1, 1), (1, 17), (17, 1), (13, 31),
                                   (40, 3)])
def test_fast_path_equals_direct_in_float32(shape, fast):
    x, k_h, k_w, grad = random_case(2, 4, *shape, 31, 0, torch.float32)
    direct, result = both_paths(x, k_h, k_w, 'interpolate', grad, fast)
    for a, b in zip(direct, result):
        scale = a.abs().max().item()
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('fast', FAST)
@pytest.mark.parametrize('mode', ['interpolate', 'fixed'])
@pytest.mark.parametrize('shape', [(1, 1), (1, 17), (13, 31), (50, 76)])
def test_fast_path_equals_direct_on_cuda(shape, mode, fast):
    # float64: cuDNN's float32 convolutions may use TF32
    case = random_case(2, 4, *shape, 31, 0, torch.float64)
    direct, result = both_paths(*[t.cuda() for t in case[:3]], mode,
                                case[3].cuda(), fast)
    for name, a, b in zip(('out', 'x', 'k_h', 'k_w'), direct, result):
        assert b.is_cuda, name
        torch.testing.assert_close(
            b,
            a,
            rtol=1e-6,
            atol=1e-6 * max(1.,
                            a.abs().max().item()),
            msg=name)


@pytest.mark.parametrize('fast', FAST)
def test_bf16_autocast_keeps_dtype_and_bf16_precision(fast):
    x, k_h, k_w, grad = random_case(2, 8, 23, 17, 31, 1, torch.float32)
    reference = oversized_conv(x, k_h, k_w, 'interpolate', 'direct')
    x_bf16 = x.bfloat16().requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = oversized_conv(x_bf16, k_h, k_w, 'interpolate', fast)
    assert out.dtype == torch.bfloat16
    error = (out.float() - reference).norm() / reference.norm()
    assert error < 1e-2
    out.float().backward(grad)
    assert x_bf16.grad.dtype == torch.bfloat16
    assert torch.isfinite(x_bf16.grad).all()


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


def test_fft_sizes_are_smooth():
    assert [fft_size(n)
            for n in (1, 11, 13, 97, 111, 607)] == [1, 12, 14, 98, 112, 625]


def test_bad_mode_and_impl_raise():
    x, k = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 5, 1)
    with pytest.raises(ValueError, match='kernel mode'):
        oversized_conv(x, k, k.transpose(2, 3), mode='global')
    with pytest.raises(ValueError, match='implementation'):
        oversized_conv(x, k, k.transpose(2, 3), impl='cuda-magic')


@pytest.mark.parametrize('mode,input_key,expected_key', [
    ('fixed', 'x', 'feats_fixed_kernel'),
    ('interpolate', 'x', 'feats_interpolated_kernel'),
    ('interpolate', 'x_pretrain_size',
     'feats_interpolated_kernel_pretrain_size'),
])
@pytest.mark.parametrize('fast', FAST)
def test_backbone_with_fast_path_matches_reference(reference, reference_arch,
                                                   mode, input_key,
                                                   expected_key, fast):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=64,
        kernel_mode=mode,
        oversized_conv_impl=fast).eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    with torch.no_grad():
        feats = model(reference[input_key])
    for feat, expected in zip(feats, reference[expected_key]):
        torch.testing.assert_close(feat, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize('fast', FAST)
def test_torch_compile_captures_the_whole_backbone(fast):
    # fullgraph: no graph breaks (the fast paths hand compilers plain ops);
    # aot_eager checks capture and autograd without a C++ toolchain run
    # static shapes, whatever sizes earlier tests compiled the backbone at
    # (Dynamo keeps them per code object; PyTorch 2.1 cannot trace the FFT
    # on symbolic sizes)
    torch._dynamo.reset()
    model = ParCNetV2(
        dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32]),
        oversized_conv_impl=fast).eval()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.randn(1, 3, 64, 96, requires_grad=True)
    for a, b in zip(compiled(x), model(x)):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in compiled(x)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
