"""Earlier results as Markdown tables, and ParCNetV2-T against the targets
(hand-computed cases, and the stored H200 run)."""
import json
import os.path as osp

import pytest

from mmparcnet.benchmarks.ratios import add_ratios
from mmparcnet.benchmarks.report import (markdown_report, markdown_targets,
                                         target_rows)
from mmparcnet.tools import benchmark

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
H200 = osp.join(REPO, 'resources', 'benchmark_gpu_h200.json')


def a_result(**settings):
    rows = [
        dict(
            backbone='ParCNetV2-T',
            dtype='fp32',
            fwd_ms=9.,
            fwdbwd_ms=44.,
            fwdbwd_peak_mib=1250.),
        dict(
            backbone='ConvNeXt-T',
            dtype='fp32',
            fwd_ms=10.,
            fwdbwd_ms=40.,
            fwdbwd_peak_mib=1000.),
        dict(
            backbone='ParCNetV2-T',
            dtype='bf16',
            fwd_ms=5.,
            fwdbwd_ms=20.,
            fwdbwd_peak_mib=None),
        dict(backbone='Swin-T', dtype='fp32', error='RuntimeError: no'),
    ]
    add_ratios(rows, 'dtype', ('fwd_ms', 'fwdbwd_ms', 'fwdbwd_peak_mib'))
    result = dict(
        device_name='GPU X',
        torch='2.15.0',
        input='224x224',
        backbone_batch=128,
        compile=None,
        backbones=rows)
    result.update(settings)
    return result


def test_the_backbones_table_has_the_measurements_and_ratios():
    text = markdown_report(a_result())
    lines = text.splitlines()
    assert lines[0].startswith('GPU X, torch 2.15.0, input 224x224, '
                               'batch 128, eager')
    assert ('| ParCNetV2-T | fp32 | 9.0 | 0.90 | 44.0 | 1.10 | 1250 | 1.25 |'
            in lines)
    assert '| ConvNeXt-T | fp32 | 10.0 | 1.00 | 40.0 | 1.00 | 1000 | 1.00 |' \
        in lines
    # bf16 has no ConvNeXt-T row: no ratios; no memory measured: '-'
    assert '| ParCNetV2-T | bf16 | 5.0 | - | 20.0 | - | - | - |' in lines
    assert any(
        line.startswith('| Swin-T | fp32 | unavailable: RuntimeError')
        for line in lines)


def test_the_targets_say_by_how_much_each_is_met_or_missed():
    verdicts = {
        (row['dtype'], row['measure']): row
        for row in target_rows(a_result())
    }
    assert verdicts['fp32', 'forward']['met']
    assert not verdicts['fp32', 'forward+backward']['met']
    assert not verdicts['fp32', 'peak training memory']['met']
    assert verdicts['bf16', 'forward']['ratio'] is None
    lines = markdown_targets(a_result()).splitlines()
    # 0.90 is the moonshot; 44 / 40 = 1.10: 10% over 1.00; 1.25 / 1.20 - 1
    assert ('| fp32 | forward | 0.90 | <= 1.00 | met, and the moonshot '
            '(0.90x) |' in lines)
    assert '| fp32 | forward+backward | 1.10 | <= 1.00 | missed by 10% |' \
        in lines
    assert ('| fp32 | peak training memory | 1.25 | <= 1.20 | missed by 4% |'
            in lines)
    assert '| bf16 | forward | - | <= 1.00 | not measured |' in lines


def test_a_compiled_result_shows_what_compiling_took():
    result = a_result(compile='inductor', compile_scope='blocks')
    for row in result['backbones']:
        row.update(first_fwd_s=12.5, first_fwdbwd_s=30.)
    text = markdown_report(result)
    assert 'torch.compile inductor (blocks)' in text.splitlines()[0]
    assert '| first calls, s |' in text
    assert '| 1.25 | 12.5 + 30.0 |' in text


def test_results_without_backbones_or_our_row_say_so():
    assert 'no backbones part' in markdown_report(a_result(backbones=[]))
    result = a_result()
    result['backbones'] = result['backbones'][1:2]
    assert 'no ParCNetV2-T row' in markdown_targets(result)


def test_the_stored_h200_run_reads_as_the_docs_table(capsys):
    with open(H200) as file:
        stored = json.load(file)
    rows = {(r['backbone'], r['dtype']): r for r in stored['backbones']}
    ours, convnext = rows['ParCNetV2-T', 'bf16'], rows['ConvNeXt-T', 'bf16']
    assert benchmark.main(['--report', H200]) == 0
    text = capsys.readouterr().out
    # the ratio from the file's own times, as docs/speed.md quotes it
    ratio = ours['fwdbwd_ms'] / convnext['fwdbwd_ms']
    assert f'{ratio:.2f}' == '3.45'
    assert (f'| bf16 | forward+backward | 3.45 | <= 1.00 | missed by '
            f'{ratio - 1:.0%} |') in text
    assert '| ParCNetV2-T | bf16 | 23.1 | 3.18 | 94.7 | 3.45 | 2392 | 1.01 |' \
        in text


def test_a_list_of_results_prints_each(tmp_path, capsys):
    path = tmp_path / 'compiled.json'
    path.write_text(
        json.dumps([a_result(),
                    a_result(input='800x1216', backbone_batch=2)]))
    assert benchmark.main(['--report', str(path)]) == 0
    text = capsys.readouterr().out
    assert 'input 224x224, batch 128' in text
    assert 'input 800x1216, batch 2' in text


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read'),
    ('{"device": ', 'is not JSON'),
    ('{"backbones": []}', 'holds no benchmark result'),
    ('[1, 2]', 'holds no benchmark result'),
])
def test_report_names_a_file_it_cannot_use(tmp_path, content, message):
    path = tmp_path / 'result.json'
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit, match=message) as error:
        benchmark.main(['--report', str(path)])
    assert str(path) in str(error.value)
