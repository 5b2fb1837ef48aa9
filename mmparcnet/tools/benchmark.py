"""``mmparcnet-benchmark``: how fast ParCNetV2 runs, measured on this device.

Three parts, one run (each part's module says what it measures):

1. the oversized convolution alone, every implementation, at the stage
   shapes of ParCNetV2-T on a detection input (800x1216 by default), in
   each of ``--dtypes`` (:mod:`mmparcnet.benchmarks.conv`);
2. ParCNetV2-T (automatic and direct oversized convolution) against
   ConvNeXt-T and Swin-T as detection backbones: forward, forward+backward,
   peak memory, with ratios to ConvNeXt-T; ``--compile inductor`` times them
   through ``torch.compile`` (:mod:`mmparcnet.benchmarks.backbones`; peak CPU
   memory: :mod:`mmparcnet.benchmarks.memory`);
3. deployment: ParCNetV2-T and ConvNeXt-T exported with ``torch.onnx.export``
   and run in ONNX Runtime beside eager PyTorch, with ``--onnx-profile``
   where ONNX Runtime's time goes (:mod:`mmparcnet.benchmarks.onnx`). It
   needs onnxruntime (left out of the default parts where it is missing).
   ``--onnx-backbones`` (and ``--backbones``) also take ``'ParCNetV2-T (no
   oversized conv)'``, a cost-accounting variant without the oversized
   convolution, to see what the rest of the model costs.

It prints a table per part (:mod:`mmparcnet.benchmarks.report`) and writes
JSON. ``--report FILE ...`` measures nothing: it prints earlier results
(this tool's JSON, or ``.ci/device-benchmark.sh``'s) as Markdown tables for
the README and docs/speed.md, with ParCNetV2-T's ratios to ConvNeXt-T
against the speed and memory targets.

It needs PyTorch and mmengine (for the backbone's base class); ConvNeXt-T
and Swin-T come from mmpretrain, or from timm where mmpretrain is missing.
On a machine with PyTorch alone (such as a bare GPU box), carry these
wheels and put them on PYTHONPATH: mmengine 0.10.7, addict, yapf,
termcolor, platformdirs (timm, numpy, rich, pyyaml and opencv are usually
there already).
"""
import argparse
import json
import sys
from typing import Tuple

import torch

from mmparcnet.benchmarks.backbones import NO_OVERSIZED_CONV, bench_backbones
from mmparcnet.benchmarks.conv import bench_oversized_conv
from mmparcnet.benchmarks.onnx import (ONNX_BACKBONES, bench_onnx,
                                       onnx_providers)
from mmparcnet.benchmarks.report import markdown_report, print_report
from mmparcnet.benchmarks.timing import cpu_name


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv``: None for ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        prog='mmparcnet-benchmark',
        description='Time the oversized convolution and ParCNetV2-T against '
        'ConvNeXt-T and Swin-T on this device.')
    parser.add_argument(
        '--device',
        default='auto',
        help="'auto' (cuda if present), 'cpu' or 'cuda'")
    parser.add_argument(
        '--size', nargs=2, type=int, default=[800, 1216], metavar=('H', 'W'))
    parser.add_argument('--conv-batch', type=int, default=2)
    parser.add_argument(
        '--backbone-batch',
        type=int,
        default=None,
        help='default: 2 on CUDA, 1 on the CPU')
    parser.add_argument(
        '--dtypes',
        nargs='+',
        default=None,
        choices=['fp32', 'bf16'],
        help='default: fp32 and bf16 on CUDA, fp32 on the CPU '
        '(where bf16 is emulated on most machines)')
    parser.add_argument(
        '--parts',
        nargs='+',
        default=None,
        choices=['conv', 'backbones', 'onnx'],
        help='default: all three (onnx only where onnxruntime is installed)')
    parser.add_argument(
        '--onnx-sizes',
        nargs='+',
        default=None,
        metavar='HxW',
        help='input sizes of the onnx part; default: 224x224 and --size')
    parser.add_argument(
        '--onnx-profile',
        action='store_true',
        help='also run each export under ONNX Runtime\'s profiler and '
        'print where its time goes, by part (node kernel time; with the CUDA '
        'provider that is the time to launch the kernels)')
    parser.add_argument(
        '--backbones',
        nargs='+',
        default=[
            'ParCNetV2-T', 'ParCNetV2-T (direct)', 'ConvNeXt-T', 'Swin-T'
        ])
    parser.add_argument(
        '--onnx-backbones',
        nargs='+',
        default=None,
        help='backbones of the onnx part (default: %s); add "%s" to see '
        'what the rest of ParCNetV2-T costs' %
        (' '.join(ONNX_BACKBONES), NO_OVERSIZED_CONV))
    parser.add_argument(
        '--warmup',
        type=int,
        default=None,
        help='default: 10 on CUDA, 1 on the CPU')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='default: 30 on CUDA, 5 on the CPU')
    parser.add_argument(
        '--compile',
        default=None,
        metavar='BACKEND',
        help='run every backbone through torch.compile with '
        "this backend (such as 'inductor'); default: eager")
    parser.add_argument(
        '--compile-scope',
        choices=('model', 'blocks'),
        default='model',
        help='with --compile: each backbone compiled whole at its input '
        "size ('model'), or block by block with dynamic sizes ('blocks', "
        'mmparcnet.models.compile_blocks)')
    parser.add_argument(
        '--no-cpu-memory',
        action='store_true',
        help='on the CPU, leave out the peak memory (measured '
        'in a fresh process that runs every backbone once '
        'more)')
    parser.add_argument(
        '--json', default=None, help='also write the results to this file')
    parser.add_argument(
        '--report',
        nargs='+',
        default=None,
        metavar='JSON',
        help='measure nothing: print these results (JSON this tool wrote, '
        'or a list of them) as Markdown tables, with ParCNetV2-T against '
        'the targets')
    return parser.parse_args(argv)


def _load_results(path: str) -> list:
    """The results in a JSON file this tool wrote (one, or a list)."""
    try:
        with open(path) as file:
            loaded = json.load(file)
    except OSError as error:
        raise SystemExit(f'--report: cannot read {path}: {error.strerror}')
    except ValueError as error:
        raise SystemExit(f'--report: {path} is not JSON: {error}')
    results = loaded if isinstance(loaded, list) else [loaded]
    for result in results:
        if not isinstance(result, dict) or 'device_name' not in result:
            raise SystemExit(f'--report: {path} holds no benchmark result '
                             '(no "device_name"): written by '
                             'mmparcnet-benchmark --json?')
    return results


def _has_onnxruntime() -> bool:
    """Whether onnxruntime imports (it decides the default parts)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _parse_size(text: str) -> Tuple[int, int]:
    """``'224x224'`` -> (224, 224), as ``--onnx-sizes`` takes them."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise SystemExit(f'--onnx-sizes: {text!r} is not HxW, such as '
                         '224x224') from None
    return height, width


def main(argv=None) -> int:
    """Run the parts asked for, print their tables and the JSON (also into
    ``--json``); returns the exit status."""
    args = parse_args(argv)
    if args.report:
        results = [r for path in args.report for r in _load_results(path)]
        print('\n\n'.join(markdown_report(result) for result in results))
        return 0
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    repeats = args.repeats if args.repeats is not None else (30 if cuda else 5)
    backbone_batch = args.backbone_batch or (2 if cuda else 1)
    dtypes = args.dtypes or (['fp32', 'bf16'] if cuda else ['fp32'])
    height, width = args.size
    # by default the onnx part runs where ONNX Runtime has a provider for
    # the device (onnxruntime's wheel for the CPU, onnxruntime-gpu for CUDA)
    parts = args.parts or ['conv', 'backbones'] + (
        ['onnx'] if _has_onnxruntime() and onnx_providers(device)[0] ==
        ('CUDAExecutionProvider' if cuda else 'CPUExecutionProvider') else [])
    if args.onnx_profile and 'onnx' not in parts:
        raise SystemExit('--onnx-profile profiles the onnx part: add onnx '
                         'to --parts')
    if args.onnx_backbones and 'onnx' not in parts:
        raise SystemExit('--onnx-backbones chooses the backbones of the onnx '
                         'part: add onnx to --parts')
    if 'onnx' in parts and not _has_onnxruntime():
        raise SystemExit('the onnx part needs onnxruntime: pip install '
                         'onnxruntime, or leave it out with --parts')
    onnx_sizes = [
        _parse_size(text)
        for text in (args.onnx_sizes or ['224x224', f'{height}x{width}'])
    ]
    torch.manual_seed(0)
    result = dict(
        device=args.device,
        device_name=(torch.cuda.get_device_name(device)
                     if cuda else cpu_name()),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        input=f'{height}x{width}',
        conv_batch=args.conv_batch,
        backbone_batch=backbone_batch,
        warmup=warmup,
        repeats=repeats,
        compile=args.compile,
        compile_scope=args.compile_scope if args.compile else None)
    if 'conv' in parts:
        result['oversized_conv'] = bench_oversized_conv(
            device, args.conv_batch, height, width, warmup, repeats, dtypes)
    if 'backbones' in parts:
        result['backbones'] = bench_backbones(
            device,
            backbone_batch,
            height,
            width,
            dtypes,
            warmup,
            repeats,
            args.backbones,
            args.compile,
            cpu_memory=not args.no_cpu_memory,
            compile_scope=args.compile_scope)
        if any(
                row.get('fwdbwd_peak_mib') is not None
                for row in result['backbones']):
            result['memory'] = device.type
    if 'onnx' in parts:
        import onnxruntime
        provider = onnx_providers(device)[0]
        result.update(
            onnxruntime=onnxruntime.__version__,
            onnx_provider=provider,
            onnx_eager_device=('cuda' if provider == 'CUDAExecutionProvider'
                               else 'cpu'),
            onnx=bench_onnx(
                device,
                list(dict.fromkeys(onnx_sizes)),
                warmup,
                repeats,
                names=args.onnx_backbones or ONNX_BACKBONES,
                profile=args.onnx_profile))
    print_report(result)
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, 'w') as file:
            file.write(text + '\n')
    print('\nJSON:\n' + text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
