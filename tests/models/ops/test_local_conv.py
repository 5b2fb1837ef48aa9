"""The spatial unit's 7x7 convolution read in channels-last memory (opt-in,
for cuDNN on CUDA) against the plain convolution: alone, inside the unit's
fast forms, and how it is offered."""
import copy
import pickle

import pytest
import torch

from mmparcnet.benchmarks.backbones import CUDNN_LOCAL, build_backbones
from mmparcnet.models.layers import SpatialBGU
from mmparcnet.models.ops import (fast_paths, gate_units, local_conv, onednn,
                                  registry)
from mmparcnet.models.ops.context import Context, call_context
from mmparcnet.models.ops.triton import AVAILABLE as TRITON_AVAILABLE


def planes_case(seed=0, device='cpu'):
    """A unit and its GELU'd value as the fast forms hand it over: an NCHW
    view of channel-major planes."""
    torch.manual_seed(seed)
    unit = SpatialBGU(6, 9).double().to(device)
    planes = torch.randn(6, 2, 5, 7, dtype=torch.float64, device=device)
    return unit, planes.transpose(0, 1).requires_grad_()


def forced(unit):
    """``unit`` taking the channels-last convolution on every call, counting
    the calls (``unit.local_calls``)."""
    unit.local_calls = 0

    def local(unit, value):
        unit.local_calls += 1
        return local_conv.channels_last_local(unit, None, value)

    unit.local = local
    return unit


@pytest.fixture(autouse=True)
def defaults():
    """The switches as built in, whatever the environment says."""
    with local_conv.on_cudnn(False), fast_paths(True):
        yield


def test_channels_last_local_equals_the_plain_convolution():
    unit, value = planes_case()
    out = local_conv.channels_last_local(unit, None, value)
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = unit.dwconv2(value.detach().contiguous().requires_grad_())
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(out, [value, unit.dwconv2.weight], upstream)
    leaf = value.detach().contiguous().requires_grad_()
    want = torch.autograd.grad(
        unit.dwconv2(leaf), [leaf, unit.dwconv2.weight], upstream)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for got, wanted in zip(grads, want):
        torch.testing.assert_close(got, wanted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('form', [
    'spatial_planes_keeping_less', 'spatial_planes_in_place', 'spatial_planes',
    'spatial_planes_triton', 'spatial_planes_onednn', 'spatial_exported'
])
def test_the_fast_forms_with_a_channels_last_local_equal_the_plain_unit(form):
    if form == 'spatial_planes_triton' and not TRITON_AVAILABLE:
        pytest.skip('needs Triton and PyTorch >= 2.6')
    if form == 'spatial_planes_onednn' and not onednn.AVAILABLE:
        pytest.skip('needs oneDNN')
    # oneDNN's GEMMs take float32 only
    dtype = torch.float32 if form == 'spatial_planes_onednn' else torch.float64
    torch.manual_seed(0)
    unit = forced(SpatialBGU(8, 9).to(dtype))
    x = torch.randn(2, 5, 6, 8, dtype=dtype)
    plain = unit.plain_forward(x)
    if form in ('spatial_planes_in_place', 'spatial_planes_onednn'):
        with torch.no_grad():
            fast = getattr(gate_units, form)(unit, call_context(x), x)
        torch.testing.assert_close(fast, plain)
        assert unit.local_calls == 1
        return
    x.requires_grad_()
    params = [x, *unit.parameters()]
    fast = getattr(gate_units, form)(unit, call_context(x, module=unit), x)
    assert unit.local_calls == 1
    grads = torch.autograd.grad(fast.square().sum(), params)
    expected = torch.autograd.grad(
        unit.plain_forward(x).square().sum(), params)
    torch.testing.assert_close(fast, plain)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_offered_only_when_asked_for_and_taken_on_cuda_only():
    with local_conv.on_cudnn(False):
        assert SpatialBGU(8, 9).local is SpatialBGU.plain_local
    with local_conv.on_cudnn(True):
        unit = SpatialBGU(8, 9)
        off = SpatialBGU(8, 9, fast_paths=False)
    assert not local_conv.enabled()
    assert off.local is SpatialBGU.plain_local
    assert isinstance(unit.local, registry.Dispatch)
    # a CPU call keeps the plain convolution
    value = torch.randn(2, 8, 5, 7)
    assert unit.local.select(unit, value) == 'plain'
    rule = unit.local.candidates[0].applies
    cuda = Context('', False, 'cuda', torch.bfloat16, True)
    assert rule(cuda, unit, value)
    assert not rule(cuda._replace(tracer='dynamo'), unit, value)
    assert not rule(cuda._replace(device='cpu'), unit, value)
    # a copy keeps the choice; a pickle chooses again where it is loaded,
    # by the switch there (as an environment variable reaches every process)
    assert copy.deepcopy(unit).local is unit.local
    assert pickle.loads(pickle.dumps(unit)).local is SpatialBGU.plain_local
    with local_conv.on_cudnn(True):
        loaded = pickle.loads(pickle.dumps(unit))
    assert [i.name for i in loaded.local.candidates] == \
        ['channels-last memory (cuDNN)']
    # a unit pickled before it had the choice gets it when loaded
    old = SpatialBGU(8, 9)
    del old.local
    assert pickle.loads(pickle.dumps(old)).local is SpatialBGU.plain_local


def test_the_benchmark_builds_the_variant():
    builders, _ = build_backbones([CUDNN_LOCAL])
    model = builders[CUDNN_LOCAL]()
    names = {
        impl.name
        for module in model.modules() if isinstance(module, SpatialBGU)
        for impl in module.local.candidates
    }
    assert names == {'channels-last memory (cuDNN)'}


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_a_unit_on_cuda_takes_cudnn_and_equals_the_default(dtype):
    torch.manual_seed(0)
    with local_conv.on_cudnn(True):
        unit = SpatialBGU(64, 31).cuda()
    default = copy.deepcopy(unit)
    default.local = SpatialBGU.plain_local
    x = torch.randn(2, 16, 24, 64, device='cuda', requires_grad=True)
    results = []
    # cuDNN's float32 convolutions may use TF32 (PyTorch's default), the
    # default's depthwise kernels do not
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for module in (unit, default):
            with torch.autocast(
                    'cuda', dtype=dtype, enabled=dtype != torch.float32):
                out = module(x)
            grads = torch.autograd.grad(out.float().square().sum(),
                                        [x, *module.parameters()])
            results.append([out.float(), *grads])
    with torch.no_grad():
        value = torch.randn(2, 64, 16, 24, device='cuda')
        assert unit.local.select(unit, value) == \
            'channels-last memory (cuDNN)'
    # cuDNN ran, forward and backward, not PyTorch's depthwise kernels
    value = value.transpose(0, 1).contiguous().transpose(0, 1)
    value.requires_grad_()
    with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        local_conv.channels_last_local(unit, None, value).sum().backward()
    names = {event.name for event in profile.events()}
    assert 'aten::cudnn_convolution' in names, sorted(names)
    assert not any('depthwise' in name for name in names), sorted(names)
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    for got, want in zip(*results):
        scale = max(1., want.abs().max().item())
        assert (got - want).abs().max().item() <= tolerance * scale
