"""The one switch for the fast paths: off, the backbone runs the reference
computation with public operators only; on, the same numbers."""
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers import runtime, torch_ops
from mmparcnet.models.layers.torch_ops import ONEDNN_LINEAR

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


def build():
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, pretrain_size=64)
    model.init_weights()
    return model


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_switched_off_the_backbone_calls_public_operators_only(train):
    model, x = build(), torch.randn(1, 3, *SIZE)
    with runtime.fast_paths(False), RecordOps() as off:
        run(model, x, train)
    assert not {op for op in off.ops if is_private(op)}
    with RecordOps() as on:
        run(model, x, train)
    # the check sees private operators where they run: oneDNN's GEMM in
    # inference, GELU's backward into a given tensor in training
    if train or ONEDNN_LINEAR is not None:
        assert {op for op in on.ops if is_private(op)}


def test_switched_off_nothing_is_written_in_place():
    model, x = build(), torch.randn(1, 3, *SIZE)
    with runtime.fast_paths(False), RecordOps() as off:
        run(model, x, False)
    # aten's in-place overloads end in an underscore (mul_, add_, gelu_)
    assert not {
        op
        for op in off.ops if op.__name__.split('.')[0].endswith('_')
    }
    with RecordOps() as on:
        run(model, x, False)
    assert {op for op in on.ops if op.__name__.split('.')[0].endswith('_')}


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
def test_fast_paths_give_the_direct_paths_numbers(train):
    model, x = build(), torch.randn(2, 3, *SIZE)
    reference = ParCNetV2(
        SMALL, pretrain_size=64, oversized_conv_impl='direct')
    reference.load_state_dict(model.state_dict())
    fast_outs, fast_grads = run(model, x, train)
    with runtime.fast_paths(False):
        off_outs, off_grads = run(model, x, train)
        # 'auto' is 'direct' there: the same computation, to the bit
        direct_outs, direct_grads = run(reference, x, train)
    for fast, off, direct in zip(fast_outs + fast_grads, off_outs + off_grads,
                                 direct_outs + direct_grads):
        scale = max(1., direct.abs().max().item())
        torch.testing.assert_close(off, direct, rtol=0, atol=0)
        torch.testing.assert_close(fast, direct, rtol=0, atol=1e-4 * scale)


def test_switch_restores_its_state():
    initial = runtime.fast_paths_enabled()
    with runtime.fast_paths(False):
        assert not runtime.fast_paths_enabled()
        with runtime.fast_paths(True):
            assert runtime.fast_paths_enabled()
        assert not runtime.fast_paths_enabled()
    assert runtime.fast_paths_enabled() == initial


@pytest.mark.parametrize('value,expected', [('0', 'False'), ('off', 'False'),
                                            ('1', 'True'), ('', 'True')])
def test_environment_variable_sets_the_default(value, expected):
    code = ('from mmparcnet.models.layers import runtime; '
            'print(runtime.fast_paths_enabled())')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            env=dict(os.environ,
                                     **{runtime.ENV_VARIABLE: value}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_bad_environment_value_is_named():
    result = subprocess.run([sys.executable, '-c', 'import mmparcnet'],
                            capture_output=True,
                            text=True,
                            env=dict(os.environ,
                                     **{runtime.ENV_VARIABLE: 'fast'}))
    assert result.returncode != 0
    assert "MMPARCNET_FAST_PATHS='fast'" in result.stderr


def test_the_written_out_gelu_backward_is_gelus(monkeypatch):
    # the PyTorch 2.1 workaround runs only where the probe fails: force it
    monkeypatch.setattr(torch_ops, 'GELU_BACKWARD_IS_EXACT', False)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(torch_ops.stride_safe_gelu, (x, ))
    # with the gradient laid out unlike the input, as the gate unit sees it
    grad = torch.randn(5, 6, dtype=torch.float64).t()
    got, = torch.autograd.grad(torch_ops.stride_safe_gelu(x), x, grad)
    want, = torch.autograd.grad(
        torch.nn.functional.gelu(x), x, grad.contiguous())
    torch.testing.assert_close(got, want)
    # float32 in, float32 gradients out; bfloat16 likewise
    for dtype in (torch.float32, torch.bfloat16):
        y = x.detach().to(dtype).requires_grad_()
        g, = torch.autograd.grad(torch_ops.stride_safe_gelu(y).sum(), y)
        assert g.dtype == dtype
