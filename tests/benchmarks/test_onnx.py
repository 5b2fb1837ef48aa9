"""Where ONNX Runtime's time goes, summed by part from its profile."""
import pytest

from mmparcnet.benchmarks.onnx import onnx_profile_parts


def test_onnx_profile_parts_add_up_kernel_times_per_run():

    def node(name, op, ts, dur):
        return dict(
            cat='Node',
            name=f'{name}_kernel_time',
            ts=ts,
            dur=dur,
            args=dict(op_name=op))

    events = [
        dict(cat='Session', name='model_run', ts=0, dur=100),
        node('/stages.0/stages.0.0/token_mixer/dwconv1/MatMul', 'MatMul', 10,
             80000),  # the warm-up run
        dict(cat='Session', name='model_run', ts=200, dur=100),
        dict(cat='Session', name='model_run', ts=400, dur=100),
        node('/stages.0/stages.0.0/token_mixer/dwconv1/MatMul', 'MatMul', 210,
             3000),
        node('/stages.0/stages.0.0/token_mixer/dwconv1/Gather', 'Gather', 220,
             1000),
        node('/stages.0/stages.0.0/mlp/MatMul', 'Gemm', 230, 5000),
        node('Gelu_token_1', 'Gelu', 410, 1000),
        node('/norm0/LayerNormalization', 'LayerNormalization', 420, 2000),
        node('/Foo', 'SomethingNew', 430, 500),
        dict(
            cat='Node',
            name='/x_fence_before',
            ts=440,
            dur=9000,
            args=dict(op_name='Add')),
    ]
    parts = onnx_profile_parts(events, skip_first_run=True)
    expected = {  # ms per run, two runs
        'oversized convolution': 2.0,
        'projections': 2.5,
        'GELU': 0.5,
        'norms': 1.0,
        'other': 0.25,
        'all nodes': 6.25
    }
    for part, ms in expected.items():
        assert parts[part] == pytest.approx(ms), part
    assert parts['layout'] == parts['elementwise'] == 0
    with_warm_up = onnx_profile_parts(events)
    assert with_warm_up['oversized convolution'] == pytest.approx(
        (80000 + 4000) / 3 / 1e3)
    with pytest.raises(ValueError, match='no model_run'):
        onnx_profile_parts(events[1:2])
