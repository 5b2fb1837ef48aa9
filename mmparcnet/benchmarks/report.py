"""The benchmark's printed tables, from its result (the JSON it writes)."""
from typing import List

from .conv import CONV_IMPLS
from .onnx import ONNX_OPSET, ONNX_PROFILE_PARTS, ONNX_RUNTIMES
from .ratios import ratio_key

# short column names for the profile table
PROFILE_LABELS = {'oversized convolution': 'oversized', 'all nodes': 'all'}


def _fmt(value, spec: str = '.1f') -> str:
    return '-' if value is None else format(value, spec)


def _name_width(rows: List[dict], minimum: int) -> int:
    """The width of a printed table's backbone column."""
    return max([minimum] + [len(row['backbone']) for row in rows])


# the backbones part's measured columns, each followed by its ratio, and
# how they are printed
BACKBONE_COLUMNS = (('fwd_ms', '.1f'), ('fwdbwd_ms', '.1f'),
                    ('fwdbwd_peak_mib', '.0f'))


def print_report(result: dict) -> None:
    """Print the device line and a table per part that ran."""
    print(f'\nDevice: {result["device_name"]} ({result["device"]}), torch '
          f'{result["torch"]}, threads {result["threads"]}')
    if result.get('oversized_conv'):
        print_conv_report(result)
    if result.get('backbones'):
        print_backbones_report(result)
    if result.get('onnx'):
        print_onnx_report(result)


def print_conv_report(result: dict) -> None:
    print(f'\nOversized convolution alone, interpolate mode, input '
          f'{result["input"]}, batch {result["conv_batch"]} (ms, median; '
          f'auto: the path chosen, x: its speed-up over direct; bf16: '
          f'bf16 map under autocast)')
    header = ' '.join(f'{impl:>8}' for impl in CONV_IMPLS)
    print(f'{"stage":>5} {"dtype":>5} {"N x C x H x W":>18} | forward '
          f'{header} {"auto":>7} {"x":>5} | fwd+bwd {header} '
          f'{"auto":>7} {"x":>5}')
    for row in result['oversized_conv']:
        shape = 'x'.join(map(str, row['shape']))
        cells = [
            f'{row["stage"]:>5} {row.get("dtype", "fp32"):>5} '
            f'{shape:>18}'
        ]
        for key, label in (('fwd', 'forward'), ('fwdbwd', 'fwd+bwd')):
            times = ' '.join(f'{_fmt(row[f"{impl}_{key}_ms"]):>8}'
                             for impl in CONV_IMPLS)
            cells.append(f'{"":{len(label)}} {times} '
                         f'{row[f"auto_{key}"]:>7} '
                         f'{_fmt(row[f"speedup_{key}"]):>5}')
        print(' | '.join(cells))


def print_backbones_report(result: dict) -> None:
    compiled = (f', torch.compile backend {result["compile"]}'
                f' ({result.get("compile_scope") or "model"})'
                if result.get('compile') else '')
    memory = {
        'cuda': 'CUDA allocator',
        'cpu': 'resident set'
    }.get(result.get('memory'), 'not measured')
    print(f'\nDetection backbones, input {result["input"]}, batch '
          f'{result["backbone_batch"]}{compiled} (ms, median; peak MiB of '
          f'fwd+bwd: {memory}; ratios to ConvNeXt-T)')
    width = _name_width(result['backbones'], 28)
    print(f'{"backbone":{width}} {"dtype":5} {"fwd":>9} {"ratio":>6} '
          f'{"fwd+bwd":>9} {"ratio":>6} {"peak MiB":>9} {"ratio":>6}')
    for row in result['backbones']:
        if 'error' in row:
            print(f'{row["backbone"]:{width}} {row["dtype"]:5} '
                  f'unavailable: {row["error"][:60]}')
            continue
        cells = [f'{row["backbone"]:{width}} {row["dtype"]:5}']
        for key, spec in BACKBONE_COLUMNS:
            cells.append(f'{_fmt(row[key], spec):>9} '
                         f'{_fmt(row.get(ratio_key(key)), ".2f"):>6}')
        if result.get('compile') and 'first_fwd_s' in row:
            cells.append(f'first calls {row["first_fwd_s"]:.1f} + '
                         f'{row["first_fwdbwd_s"]:.1f} s')
        print(' '.join(cells))


def print_onnx_report(result: dict) -> None:
    print(f'\nExported (torch.onnx.export, legacy exporter, opset '
          f'{ONNX_OPSET}) in ONNX Runtime {result["onnxruntime"]} '
          f'({result["onnx_provider"]}, default session options) beside '
          f'eager PyTorch on {result["onnx_eager_device"]}, batch 1 (ms, '
          f'median; ratios to ConvNeXt-T in the same runtime; fixed: '
          f'exported at the size it runs, dynamic: '
          f'exported once with dynamic height and width; diff: largest '
          f'|ONNX - eager| over the outputs)')
    width = _name_width(result['onnx'], 12)
    print(f'{"input":>9} {"backbone":{width}} {"eager":>8} {"ratio":>6} '
          f'{"fixed":>8} {"ratio":>6} {"dynamic":>8} {"ratio":>6} '
          f'{"diff fixed":>10} {"dynamic":>8}')
    for row in result['onnx']:
        cells = [f'{row["input"]:>9} {row["backbone"]:{width}}']
        for kind in ONNX_RUNTIMES:
            cells.append(f'{_fmt(row[kind + "_ms"]):>8} '
                         f'{_fmt(row.get(ratio_key(kind + "_ms")), ".2f"):>6}')
        cells.append(f'{row["onnx_fixed_max_diff"]:>10.1e} '
                     f'{row["onnx_dynamic_max_diff"]:>8.1e}')
        print(' '.join(cells))
    profiled = [row for row in result['onnx'] if 'onnx_fixed_profile' in row]
    if profiled:
        print_onnx_profile(profiled)


def print_onnx_profile(rows: List[dict]) -> None:
    parts = [part for part, _ in ONNX_PROFILE_PARTS] + ['all nodes']
    labels = [PROFILE_LABELS.get(part, part) for part in parts]
    width = _name_width(rows, 8)
    print('\nWhere ONNX Runtime spends the time (its profiler: node kernel '
          'time, ms per run, summed by part; oversized: the oversized '
          'convolution\'s nodes)')
    columns = [max(len(label), 7) for label in labels]
    print(f'{"input":>9} {"export":7} {"backbone":{width}} ' +
          ' '.join(f'{label:>{column}}'
                   for label, column in zip(labels, columns)))
    for kind in ('onnx_fixed', 'onnx_dynamic'):
        for row in rows:
            cells = ' '.join(
                f'{_fmt(row[kind + "_profile"].get(part)):>{column}}'
                for part, column in zip(parts, columns))
            print(f'{row["input"]:>9} {kind[5:]:7} {row["backbone"]:{width}} '
                  f'{cells}')


# -- Markdown, for the README and docs/speed.md -------------------------------

# Issue 28's targets for ParCNetV2-T against ConvNeXt-T in the same run, as
# (measured key, measure, target, moonshot): time (forward,
# forward+backward) at most parity, the paper's claim of better than parity
# as the moonshot; peak training memory at most 1.2x.
TARGETS = (
    ('fwd_ms', 'forward', 1.00, 0.90),
    ('fwdbwd_ms', 'forward+backward', 1.00, 0.90),
    ('fwdbwd_peak_mib', 'peak training memory', 1.20, None),
)
TARGET_BACKBONE = 'ParCNetV2-T'


def _setting(result: dict) -> str:
    """What a result measured, in one line."""
    mode = (f'torch.compile {result["compile"]} '
            f'({result.get("compile_scope") or "model"})'
            if result.get('compile') else 'eager')
    return (f'{result["device_name"]}, torch {result["torch"]}, input '
            f'{result["input"]}, batch {result["backbone_batch"]}, {mode}')


def markdown_backbones(result: dict) -> str:
    """The backbones part as a Markdown table (ms, median; peak MiB of
    forward+backward; ratios to ConvNeXt-T in the same run)."""
    compiled = bool(result.get('compile'))
    header = [
        'backbone', 'dtype', 'forward', 'ratio', 'fwd+bwd', 'ratio',
        'peak MiB', 'ratio'
    ] + (['first calls, s'] if compiled else [])
    lines = [
        f'{_setting(result)} (ms, median; peak MiB of forward+backward)', '',
        '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)
    ]
    for row in result['backbones']:
        if 'error' in row:
            cells = [
                row['backbone'], row['dtype'],
                f'unavailable: {row["error"][:60]}'
            ] + [''] * (
                len(header) - 3)
        else:
            cells = [row['backbone'], row['dtype']]
            for key, spec in BACKBONE_COLUMNS:
                cells += [
                    _fmt(row.get(key), spec),
                    _fmt(row.get(ratio_key(key)), '.2f')
                ]
            if compiled:
                cells.append(f'{_fmt(row.get("first_fwd_s"))} + '
                             f'{_fmt(row.get("first_fwdbwd_s"))}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def target_rows(result: dict) -> List[dict]:
    """ParCNetV2-T's ratios to ConvNeXt-T against the targets, per dtype
    and measure: ``ratio`` None where either was not measured."""
    rows = []
    for row in result.get('backbones', ()):
        if row['backbone'] != TARGET_BACKBONE or 'error' in row:
            continue
        for key, measure, target, moonshot in TARGETS:
            ratio = row.get(ratio_key(key))
            rows.append(
                dict(
                    dtype=row['dtype'],
                    measure=measure,
                    ratio=ratio,
                    target=target,
                    moonshot=moonshot,
                    met=None if ratio is None else ratio <= target))
    return rows


def _verdict(row: dict) -> str:
    if row['ratio'] is None:
        return 'not measured'
    if not row['met']:
        return f'missed by {row["ratio"] / row["target"] - 1:.0%}'
    if row['moonshot'] is not None and row['ratio'] <= row['moonshot']:
        return f'met, and the moonshot ({row["moonshot"]:.2f}x)'
    return 'met'


def markdown_targets(result: dict) -> str:
    """:func:`target_rows` as a Markdown table."""
    rows = target_rows(result)
    if not rows:
        return (f'{_setting(result)}: no {TARGET_BACKBONE} row to compare '
                'with the targets')
    lines = [
        f'{TARGET_BACKBONE} against ConvNeXt-T: {_setting(result)}', '',
        '| dtype | measure | ratio | target | |', '|---|---|---|---|---|'
    ]
    for row in rows:
        lines.append(f'| {row["dtype"]} | {row["measure"]} | '
                     f'{_fmt(row["ratio"], ".2f")} | '
                     f'<= {row["target"]:.2f} | {_verdict(row)} |')
    return '\n'.join(lines)


def markdown_report(result: dict) -> str:
    """The backbones table and the targets of one result (a result without
    a backbones part: a line that says so)."""
    if not result.get('backbones'):
        return f'{_setting(result)}: no backbones part'
    return markdown_backbones(result) + '\n\n' + markdown_targets(result)
