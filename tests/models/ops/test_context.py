"""The switch, and the one place that tells tracers apart."""
import os
import subprocess
import sys

import pytest
import torch

from mmparcnet.models.ops import context


def test_switch_restores_its_state():
    initial = context.fast_paths_enabled()
    with context.fast_paths(False):
        assert not context.fast_paths_enabled()
        with context.fast_paths(True):
            assert context.fast_paths_enabled()
        assert not context.fast_paths_enabled()
    assert context.fast_paths_enabled() == initial


@pytest.mark.parametrize('value,expected', [('0', 'False'), ('off', 'False'),
                                            ('1', 'True'), ('', 'True')])
def test_environment_variable_sets_the_default(value, expected):
    code = ('import mmparcnet; from mmparcnet.models import ParCNetV2; '
            'model = ParCNetV2(dict(depths=[1], dims=[8]), out_indices=0); '
            'print(mmparcnet.fast_paths_enabled(), '
            'type(model.stages[0][0].mlp.compute).__name__)')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            env=dict(os.environ,
                                     **{context.ENV_VARIABLE: value}))
    assert result.returncode == 0, result.stderr
    # off: the layers hold their plain forward itself, no dispatch
    assert result.stdout.split() == [
        expected, 'Dispatch' if expected == 'True' else 'function'
    ]


def test_a_bad_environment_value_is_named():
    result = subprocess.run([sys.executable, '-c', 'import mmparcnet'],
                            capture_output=True,
                            text=True,
                            env=dict(os.environ,
                                     **{context.ENV_VARIABLE: 'fast'}))
    assert result.returncode != 0
    assert "MMPARCNET_FAST_PATHS='fast'" in result.stderr


def test_the_old_switch_module_still_works_and_says_where_it_went():
    with pytest.warns(DeprecationWarning, match='mmparcnet.set_fast_paths'):
        sys.modules.pop('mmparcnet.models.layers.runtime', None)
        from mmparcnet.models.layers import runtime
    assert runtime.set_fast_paths is context.set_fast_paths


def record_context(x):
    """What a call on ``x`` would see, and the tensor itself."""
    record_context.seen.append(context.call_context(x))
    return x * 2


def test_eager_calls_see_no_tracer():
    record_context.seen = []
    x = torch.randn(2, 3)
    record_context(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        record_context(x)
    with torch.no_grad():
        record_context(x.requires_grad_())
    record_context(x)
    assert [c.tracer for c in record_context.seen] == [context.EAGER] * 4
    assert [c.dtype for c in record_context.seen
            ] == [torch.float32, torch.bfloat16, torch.float32, torch.float32]
    assert [c.grad for c in record_context.seen] == [False, False, False, True]
    assert not any(c.exporting for c in record_context.seen)


def test_the_jit_tracer_and_dynamo_are_told_apart():
    record_context.seen = []
    torch.jit.trace(record_context, torch.randn(2, 3), check_trace=False)
    torch._dynamo.reset()
    torch.compile(record_context, backend='eager')(torch.randn(2, 3))
    assert [c.tracer
            for c in record_context.seen] == [context.JIT, context.DYNAMO]
    assert not any(c.exporting for c in record_context.seen)


def test_the_onnx_exporter_is_exporting(tmp_path):
    record_context.seen = []

    class Model(torch.nn.Module):

        def forward(self, x):
            return record_context(x)

    legacy = {'dynamo': False} if 'dynamo' in torch.onnx.export.__code__.\
        co_varnames else {}
    torch.onnx.export(Model(), (torch.randn(2, 3), ), str(tmp_path / 'm.onnx'),
                      **legacy)
    assert record_context.seen[-1].tracer == context.JIT
    assert record_context.seen[-1].exporting
