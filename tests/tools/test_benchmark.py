"""The benchmark command runs and reports (timings are never asserted)."""
import copy
import json

import pytest
import torch

from mmparcnet.models import ParCNetV2
from mmparcnet.tools import benchmark, resident_memory


@pytest.mark.requires('mmpretrain')  # ConvNeXt-T (or timm's)
def test_benchmark_reports_every_part(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert benchmark.main([
        '--device', 'cpu', '--size', '64', '96', '--conv-batch', '1',
        '--dtypes', 'fp32', 'bf16', '--repeats', '1', '--warmup', '0',
        '--backbones', 'ParCNetV2-T', 'ConvNeXt-T', '--onnx-sizes', '64x96',
        '--onnx-backbones', 'ParCNetV2-T', benchmark.NO_OVERSIZED_CONV,
        'ConvNeXt-T', '--onnx-profile', '--json',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    shapes = [[1, 64, 16, 24], [1, 128, 8, 12], [1, 320, 4, 6], [1, 512, 2, 3]]
    assert [
        (row['dtype'], row['shape']) for row in result['oversized_conv']
    ] == [(dtype, shape) for dtype in ('fp32', 'bf16') for shape in shapes]
    for row in result['oversized_conv']:
        for impl in ('direct', 'fft', 'matmul'):
            assert row[f'{impl}_fwd_ms'] > 0 and row[f'{impl}_fwdbwd_ms'] > 0
        for key in ('fwd', 'fwdbwd'):
            assert row[f'speedup_{key}'] == pytest.approx(
                row[f'direct_{key}_ms'] /
                row[f'{row[f"auto_{key}"]}_{key}_ms'])
    rows = {(r['backbone'], r['dtype']): r for r in result['backbones']}
    assert set(rows) == {('ParCNetV2-T', 'fp32'), ('ParCNetV2-T', 'bf16'),
                         ('ConvNeXt-T', 'fp32'), ('ConvNeXt-T', 'bf16')}
    assert all('error' not in r for r in rows.values())
    for dtype in ('fp32', 'bf16'):
        ours, theirs = rows[('ParCNetV2-T', dtype)], rows[('ConvNeXt-T',
                                                           dtype)]
        for key in ('fwd', 'fwdbwd'):
            assert ours[f'{key}_ms_vs_convnext'] == pytest.approx(
                ours[f'{key}_ms'] / theirs[f'{key}_ms'])
    assert rows[('ParCNetV2-T', 'fp32')]['source'] == 'mmparcnet'
    if resident_memory.unsupported_reason() is None:
        assert result['memory'] == 'cpu'
        assert all(0 < r['fwd_peak_mib'] < r['fwdbwd_peak_mib']
                   for r in rows.values())
    exported = {(r['backbone'], r['input']): r for r in result['onnx']}
    assert set(exported) == {('ParCNetV2-T', '64x96'),
                             (benchmark.NO_OVERSIZED_CONV, '64x96'),
                             ('ConvNeXt-T', '64x96')}
    ours, theirs = exported['ParCNetV2-T', '64x96'], exported['ConvNeXt-T',
                                                              '64x96']
    for kind in ('eager', 'onnx_fixed', 'onnx_dynamic'):
        assert ours[f'{kind}_ms_vs_convnext'] == pytest.approx(
            ours[f'{kind}_ms'] / theirs[f'{kind}_ms'])
    for row in exported.values():  # the exports agree with eager
        assert row['onnx_fixed_max_diff'] < 1e-4
        assert row['onnx_dynamic_max_diff'] < 1e-4
    assert result['onnx_provider'] == 'CPUExecutionProvider'
    for name, row in exported.items():  # ONNX Runtime's profile, by part
        for kind in ('onnx_fixed', 'onnx_dynamic'):
            parts = row[f'{kind}_profile']
            assert parts['all nodes'] == pytest.approx(
                sum(v for k, v in parts.items() if k != 'all nodes'))
            assert parts['projections'] > 0
            # only ParCNetV2-T has nodes under an oversized convolution
            assert (parts['oversized convolution'] > 0) == (
                name[0] == 'ParCNetV2-T')
    printed = capsys.readouterr().out
    assert 'Detection backbones' in printed and 'ONNX Runtime' in printed
    assert 'Where ONNX Runtime spends the time' in printed


def test_the_accounting_variant_is_parcnetv2_less_its_oversized_conv():
    torch.manual_seed(0)
    full = ParCNetV2('xt', oversized_conv_impl='direct').eval()
    variant = benchmark.without_oversized_conv(copy.deepcopy(full))
    # batch 2: the 7x7 branch's output then reaches the projection in
    # another layout than the sum's
    x = torch.randn(2, 3, 72, 104)
    with torch.no_grad():
        with_conv, without = full(x), variant(x)
        for name, param in full.named_parameters():  # silence the conv
            if '.dwconv1.' in name:
                param.zero_()
        silenced = full(x)
    for ours, reference, other in zip(without, silenced, with_conv):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
        # and the conv was there to leave out, beyond that tolerance
        assert not torch.allclose(ours, other, rtol=1e-5, atol=1e-5)


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
    parts = benchmark.onnx_profile_parts(events, skip_first_run=True)
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
    with_warm_up = benchmark.onnx_profile_parts(events)
    assert with_warm_up['oversized convolution'] == pytest.approx(
        (80000 + 4000) / 3 / 1e3)
    with pytest.raises(ValueError, match='no model_run'):
        benchmark.onnx_profile_parts(events[1:2])


def test_benchmark_refuses_onnx_options_without_the_onnx_part():
    with pytest.raises(SystemExit, match='--onnx-profile .* add onnx to'):
        benchmark.main(['--parts', 'conv', '--onnx-profile'])
    with pytest.raises(SystemExit, match='--onnx-backbones .* add onnx to'):
        benchmark.main(['--parts', 'conv', '--onnx-backbones', 'ConvNeXt-T'])


def test_benchmark_refuses_a_malformed_onnx_size():
    with pytest.raises(SystemExit, match="'224' is not HxW"):
        benchmark.main(['--parts', 'onnx', '--onnx-sizes', '224'])


@pytest.mark.skipif(
    resident_memory.unsupported_reason() is not None,
    reason=str(resident_memory.unsupported_reason()))
def test_cpu_peak_memory_holds_what_training_must_hold():
    height, width = 128, 192
    peaks = benchmark.cpu_peak_memory(['ParCNetV2-T'], 1, height, width,
                                      ['fp32'])
    peak = peaks['ParCNetV2-T', 'fp32']['fwdbwd_peak_mib']
    # counted independently: what autograd keeps for the backward pass (all
    # of it lives when the forward pass ends) and the weights' gradients
    # (all of them live when the backward pass ends)
    torch = benchmark.torch
    model = ParCNetV2('tiny', oversized_conv_impl='auto').train()
    x = torch.randn(1, 3, height, width)
    present = {
        t.untyped_storage().data_ptr()
        for t in (x, *model.parameters())
    }
    kept = {}

    def count(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in present:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        model(x)
    kept_mib = sum(kept.values()) / 2**20
    grads_mib = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert max(kept_mib, grads_mib) <= peak <= kept_mib + grads_mib + 32


def test_backbones_are_timed_in_turns():
    calls = []
    result = benchmark.measure_interleaved(
        {name: (lambda name=name: calls.append(name))
         for name in 'ab'},
        benchmark.torch.device('cpu'),
        warmup=1,
        repeats=2)
    assert calls == ['a', 'b'] * 3
    assert set(result) == {'a', 'b'}
    assert all(r['ms'] >= 0 and r['peak_mib'] is None for r in result.values())


def test_cpu_runs_fp32_unless_asked_for_bf16(tmp_path):
    out = tmp_path / 'bench.json'
    assert benchmark.main([
        '--device', 'cpu', '--size', '32', '32', '--parts', 'backbones',
        '--repeats', '1', '--warmup', '0', '--backbones', 'ParCNetV2-T',
        '--no-cpu-memory', '--json',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    assert 'memory' not in result
    rows = result['backbones']
    assert [(r['backbone'], r['dtype'])
            for r in rows] == [('ParCNetV2-T', 'fp32')]
    assert rows[0]['fwdbwd_peak_mib'] is None


def test_backbones_can_run_compiled(tmp_path, monkeypatch, capsys):
    compiled = []

    def spy(model, backend):
        compiled.append((type(model).__name__, backend))
        return real_compile(model, backend=backend)

    real_compile = benchmark.torch.compile
    monkeypatch.setattr(benchmark.torch, 'compile', spy)
    out = tmp_path / 'bench.json'
    assert benchmark.main([
        '--device', 'cpu', '--size', '32', '32', '--parts', 'backbones',
        '--repeats', '1', '--warmup', '0', '--backbones', 'ParCNetV2-T',
        '--compile', 'eager', '--json',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    assert compiled == [('ParCNetV2', 'eager')]
    assert result['compile'] == 'eager'
    [row] = result['backbones']
    assert 'error' not in row and row['fwd_ms'] > 0 and row['fwdbwd_ms'] > 0
    assert 'torch.compile backend eager' in capsys.readouterr().out


def test_baselines_need_mmpretrain_or_timm_only_when_asked_for(monkeypatch):

    def missing():
        raise ImportError('not installed')

    monkeypatch.setattr(benchmark, '_mmpretrain_baselines', missing)
    monkeypatch.setattr(benchmark, '_timm_baselines', missing)
    builders, _ = benchmark.build_backbones(['ParCNetV2-T'])
    assert list(builders) == ['ParCNetV2-T']
    with pytest.raises(
            SystemExit,
            match='ConvNeXt-T come from mmpretrain '
            'or timm, and neither is installed'):
        benchmark.build_backbones(['ParCNetV2-T', 'ConvNeXt-T'])
    with pytest.raises(SystemExit, match=r"unknown backbones \['ResNet'\]"):
        benchmark.build_backbones(['ResNet'])
