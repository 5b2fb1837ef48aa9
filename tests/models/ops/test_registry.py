"""The registry: with the fast paths off the backbone runs its plain
computation in public operators only; on, every rule picks an
implementation that gives the same numbers; the choice is made when a
layer is built, and nothing but :mod:`.context` asks PyTorch at run time."""
import copy
import os.path as osp
import pickle
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mmparcnet
from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers import ChannelBGU, SpatialBGU
from mmparcnet.models.ops import context, onednn, registry
from mmparcnet.models.ops.registry import choose_impl

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
# stage 0 of a 96x128 input is 24x32: 47 + 63 taps, the CPU's matmul path
SIZE = (96, 128)


class RecordOps(TorchDispatchMode):
    """Every ATen-level operator that runs, forward and backward."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func)
        return func(*args, **(kwargs or {}))


def is_private(op) -> bool:
    """Operators outside PyTorch's public API: other namespaces (oneDNN's
    ``mkldnn``), in-place GELU (no public form), GELU's backward into a
    given tensor (``grad_input=``)."""
    namespace = op.namespace if hasattr(op, 'namespace') else \
        op.name().split('::')[0]
    name = op.name() if hasattr(op, 'name') else str(op)
    return namespace != 'aten' or name in ('aten::gelu_', ) or (
        'gelu_backward' in name and 'grad_input' in str(op))


def run(model, x, train: bool):
    """Outputs (and input/parameter gradients in training)."""
    model.train(train)
    x = x.clone().requires_grad_(train)
    with torch.set_grad_enabled(train):
        outs = model(x)
    if not train:
        return outs, ()
    sum((o * torch.cos(o.detach())).sum() for o in outs).backward()
    grads = (x.grad, ) + tuple(p.grad.clone() for p in model.parameters())
    model.zero_grad()
    return outs, grads


def build(**kwargs):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, pretrain_size=64, **kwargs)
    model.init_weights()
    return model


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_switched_off_the_backbone_calls_public_operators_only(train):
    x, plain, fast = torch.randn(1, 3, *SIZE), build(fast_paths=False), build()
    with RecordOps() as off:
        run(plain, x, train)
    assert not {op for op in off.ops if is_private(op)}
    with RecordOps() as on:
        run(fast, x, train)
    # the check sees private operators where they run: oneDNN's GEMM in
    # inference, GELU's backward into a given tensor in training
    if train or onednn.AVAILABLE:
        assert {op for op in on.ops if is_private(op)}


def test_switched_off_nothing_is_written_in_place():
    x, plain, fast = torch.randn(1, 3, *SIZE), build(fast_paths=False), build()
    with RecordOps() as off:
        run(plain, x, False)
    # aten's in-place overloads end in an underscore (mul_, add_, gelu_)
    assert not {
        op
        for op in off.ops if op.__name__.split('.')[0].endswith('_')
    }
    with RecordOps() as on:
        run(fast, x, False)
    assert {op for op in on.ops if op.__name__.split('.')[0].endswith('_')}


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_fast_paths_give_the_plain_computations_numbers(train):
    model, x = build(fast_paths=True), torch.randn(2, 3, *SIZE)
    fast_outs, fast_grads = run(model, x, train)
    model.set_fast_paths(False)
    off_outs, off_grads = run(model, x, train)
    # 'auto' is the plain direct computation there: the same, to the bit
    direct_outs, direct_grads = run(
        build(fast_paths=False, oversized_conv_impl='direct'), x, train)
    for fast, off, direct in zip(fast_outs + fast_grads, off_outs + off_grads,
                                 direct_outs + direct_grads):
        scale = max(1., direct.abs().max().item())
        torch.testing.assert_close(off, direct, rtol=0, atol=0)
        torch.testing.assert_close(fast, direct, rtol=0, atol=1e-4 * scale)


def test_the_choice_is_made_when_a_layer_is_built():
    with mmparcnet.fast_paths(False):
        plain = build()
    fast = build()
    # built while the switch was off: the plain forward itself
    assert plain.stages[0][0].mlp.compute is ChannelBGU.plain_forward
    assert isinstance(fast.stages[0][0].mlp.compute, registry.Dispatch)
    with mmparcnet.fast_paths(False):
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            # the switch does not reach a built model; its method does
            assert fast.stages[0][0].mlp.compute.select(
                fast.stages[0][0].mlp, torch.randn(1, 2, 2, 8)) != 'plain'
            fast(x)
    fast.set_fast_paths(False)
    assert fast.stages[0][0].token_mixer.compute is SpatialBGU.plain_forward
    assert fast.stages[0][0].token_mixer.dwconv1.compute.fast is False


@pytest.mark.parametrize(
    'operation,shape,setting,expected',
    [('channel_bgu', (2, 4, 4, 8), 'inference', 'in place'),
     ('channel_bgu', (2, 4, 4, 8), 'training', 'gated projection keeping '
      'less'), ('channel_bgu', (2, 4, 4, 8), 'bf16 inference', 'in place'),
     ('spatial_bgu', (2, 4, 4, 8), 'training', 'channel-major planes, gated '
      'projection keeping less'),
     ('spatial_bgu',
      (2, 4, 4, 8), 'bf16 inference', 'channel-major planes, in place'),
     ('downsample', (2, 16, 16, 8), 'inference', 'from contiguous NCHW '
      'planes'), ('downsample', (2, 32, 32, 8), 'inference', 'plain')])
def test_rules_pick_by_the_calls_context(operation, shape, setting, expected):
    layer = {
        'channel_bgu': lambda: ChannelBGU(8),
        'spatial_bgu': lambda: SpatialBGU(8, 7),
        'downsample': lambda: mmparcnet.models.layers.Downsample(8, 8),
    }[operation]()
    x = torch.randn(*shape)
    autocast = torch.autocast(
        'cpu', dtype=torch.bfloat16, enabled=setting.startswith('bf16'))
    with autocast, torch.set_grad_enabled(setting == 'training'), \
            torch.backends.mkldnn.flags(enabled=False):
        assert layer.compute.select(layer, x) == expected
    if onednn.AVAILABLE and operation != 'downsample':
        with torch.no_grad():
            assert 'oneDNN' in layer.compute.select(layer, x)


def test_a_frozen_input_with_trainable_weights_counts_as_training():
    # in-place forms would break the backward pass of the unit's weights
    unit = ChannelBGU(8)
    x = torch.randn(1, 2, 2, 8)
    assert 'keeping less' in unit.compute.select(unit, x)
    unit.requires_grad_(False)
    with torch.backends.mkldnn.flags(enabled=False):
        assert unit.compute.select(unit, x) == 'in place'


def test_chosen_models_copy_and_pickle():
    model = build().eval()
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        expected = model(x)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            compute = other.stages[0][0].mlp.compute
            assert isinstance(compute, registry.Dispatch)
            for a, b in zip(other(x), expected):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_automatic_choice_is_deterministic_and_by_shape():
    # stage 1 of an 800x1216 detection input: Toeplitz GEMMs on a GPU and
    # on the CPU (forward and training alike)
    assert choose_impl((2, 64, 200, 304), 399, 607, 'cuda') == 'matmul'
    assert choose_impl((2, 64, 200, 304), 399, 607, 'cuda',
                       training=True) == 'matmul'
    assert choose_impl((2, 64, 200, 304), 399, 607, 'cpu') == 'matmul'
    assert choose_impl((2, 64, 200, 304), 399, 607, 'cpu',
                       training=True) == 'matmul'
    # on the CPU the direct path keeps only the smallest maps
    assert choose_impl((16, 64, 56, 56), 111, 111, 'cpu') == 'matmul'
    assert choose_impl((16, 320, 14, 14), 27, 27, 'cpu',
                       training=True) == 'matmul'
    assert choose_impl((2, 320, 50, 76), 99, 151, 'cpu') == 'matmul'
    assert choose_impl((2, 320, 50, 76), 99, 151, 'cuda') == 'matmul'
    # its last stage: direct on a GPU, GEMMs on the CPU
    assert choose_impl((2, 512, 25, 38), 49, 75, 'cuda') == 'direct'
    assert choose_impl((2, 512, 25, 38), 49, 75, 'cpu') == 'matmul'
    # the last stage at 224: direct everywhere
    assert choose_impl((1, 512, 7, 7), 13, 13, 'cpu') == 'direct'
    assert choose_impl((1, 512, 7, 7), 13, 13, 'cpu',
                       training=True) == 'direct'
    assert choose_impl((1, 512, 7, 7), 13, 13, 'cuda') == 'direct'
    # fixed mode: the stored taps count, not the map
    assert choose_impl((2, 512, 50, 76), 13, 13, 'cuda') == 'direct'
    assert choose_impl((2, 512, 50, 76), 13, 13, 'cpu') == 'direct'
    # an unknown device type behaves like the CPU
    assert choose_impl((2, 64, 200, 304), 399, 607, 'mps') == 'matmul'


@pytest.mark.parametrize('impl', ['direct', 'fft', 'matmul'])
def test_choice_can_be_forced_from_the_config(impl, monkeypatch):
    calls = []
    for name, original in list(registry.OVERSIZED_CONV.items()):

        def spy(*args, name=name, original=original):
            calls.append(name)
            return original(*args)

        monkeypatch.setitem(registry.OVERSIZED_CONV, name, spy)
    model = ParCNetV2(
        dict(depths=[1, 1], dims=[8, 16]),
        out_indices=(1, ),
        oversized_conv_impl=impl)
    model(torch.randn(1, 3, 64, 64))
    assert calls == [impl, impl]
    # the layer says what a call would take
    layer = model.stages[0][0].token_mixer.dwconv1
    x = torch.randn(1, 8, 16, 16)
    assert layer.compute.select(x, layer.conv_h.weight, layer.conv_w.weight,
                                'interpolate') == impl


def test_no_module_but_the_context_asks_pytorch_what_is_running():
    # the runtime queries of the fast paths live in one place
    queries = re.compile(
        r'is_tracing\(|is_compiling\(|is_exporting\(|is_in_onnx_export\(|'
        r'is_autocast\w*enabled\(|get_autocast\w*dtype\(|is_grad_enabled\(|'
        r'is_current_stream_capturing\(|mkldnn\.enabled')
    root = osp.dirname(mmparcnet.__file__)
    found = []
    for folder in ('models', ):
        for path in sorted(
                __import__('glob').glob(
                    osp.join(root, folder, '**', '*.py'), recursive=True)):
            if path.endswith(osp.join('ops', 'context.py')):
                continue
            with open(path) as file:
                found += [
                    f'{osp.relpath(path, root)}: {line.strip()}'
                    for line in file if queries.search(line)
                ]
    assert found == []
    assert queries.search(open(context.__file__).read())
