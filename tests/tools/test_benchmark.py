"""The benchmark command runs and reports (timings are never asserted).

Its parts, one module each, are tested in ``tests/benchmarks/``.
"""
import json

import pytest
import torch

from mmparcnet.benchmarks import resident_memory
from mmparcnet.benchmarks.backbones import NO_OVERSIZED_CONV
from mmparcnet.models.compiling import torch_supports_compile_blocks
from mmparcnet.tools import benchmark


@pytest.mark.requires('mmpretrain')  # ConvNeXt-T (or timm's)
def test_benchmark_reports_every_part(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert benchmark.main([
        '--device', 'cpu', '--size', '64', '96', '--conv-batch', '1',
        '--dtypes', 'fp32', 'bf16', '--repeats', '1', '--warmup', '0',
        '--backbones', 'ParCNetV2-T', 'ConvNeXt-T', '--onnx-sizes', '64x96',
        '--onnx-backbones', 'ParCNetV2-T', NO_OVERSIZED_CONV, 'ConvNeXt-T',
        '--onnx-profile', '--json',
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
                             (NO_OVERSIZED_CONV, '64x96'),
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


def test_benchmark_refuses_onnx_options_without_the_onnx_part():
    with pytest.raises(SystemExit, match='--onnx-profile .* add onnx to'):
        benchmark.main(['--parts', 'conv', '--onnx-profile'])
    with pytest.raises(SystemExit, match='--onnx-backbones .* add onnx to'):
        benchmark.main(['--parts', 'conv', '--onnx-backbones', 'ConvNeXt-T'])


def test_benchmark_refuses_a_malformed_onnx_size():
    with pytest.raises(SystemExit, match="'224' is not HxW"):
        benchmark.main(['--parts', 'onnx', '--onnx-sizes', '224'])


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

    real_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', spy)
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


@pytest.mark.skipif(
    not torch_supports_compile_blocks(),
    reason='compiling the blocks needs PyTorch >= 2.5')
def test_backbones_can_run_compiled_block_by_block(tmp_path, monkeypatch,
                                                   capsys):
    compiled = []
    original = torch.nn.Module.compile

    def spy(module, **kwargs):
        compiled.append(type(module).__name__)
        return original(module, **kwargs)

    monkeypatch.setattr(torch.nn.Module, 'compile', spy)
    out = tmp_path / 'bench.json'
    assert benchmark.main([
        '--device', 'cpu', '--size', '32', '32', '--parts', 'backbones',
        '--repeats', '1', '--warmup', '0', '--backbones', 'ParCNetV2-T',
        '--compile', 'eager', '--compile-scope', 'blocks', '--json',
        str(out)
    ]) == 0
    result = json.loads(out.read_text())
    assert compiled == ['ParCNetV2Block'] * 21
    assert result['compile_scope'] == 'blocks'
    [row] = result['backbones']
    assert row['first_fwd_s'] >= 0 and row['first_fwdbwd_s'] >= 0
    assert 'torch.compile backend eager (blocks)' in capsys.readouterr().out
