"""``mmparcnet-benchmark``: how fast ParCNetV2 runs, measured on this device.

Three parts, one run:

1. the oversized convolution alone, every implementation (direct, FFT,
   matmul) forward and forward+backward at the four stage shapes
   ParCNetV2-T meets on a detection input (800x1216 by default), in each of
   ``--dtypes`` (bf16: a bf16 map under autocast), with the path the
   automatic choice takes and its speed-up over the direct path;
2. ParCNetV2-T (automatic and direct oversized convolution) against
   ConvNeXt-T and Swin-T as detection backbones (all four stage outputs):
   forward, forward+backward, peak memory, in fp32 and bf16 autocast, with
   ratios to ConvNeXt-T. The backbones are timed in turns, one call of each
   per round, so that a shared machine's changing load does not favour
   whichever ran in a quiet minute. ``--compile inductor`` times them all
   through ``torch.compile`` instead (compilation left out of the timing).
   Peak memory comes from the CUDA allocator during the timed calls; on the
   CPU, where PyTorch counts nothing, from the resident set of a fresh
   process that runs each backbone once more (see :mod:`.resident_memory`);
3. deployment: ParCNetV2-T and ConvNeXt-T exported with ``torch.onnx.export``
   (the legacy exporter, as MMDeploy calls it; opset 17), once for each input
   size and once with dynamic height and width, run in ONNX Runtime with
   default session options beside eager PyTorch, all timed in turns, batch
   1, at the classification size (224x224) and the detection size; each
   export's largest difference from eager is reported too, and with
   ``--onnx-profile`` where ONNX Runtime's profiler sees the time go, by
   part. It needs onnxruntime (left out of the default parts where it is
   missing). ``--onnx-backbones`` (and ``--backbones``) also take
   ``'ParCNetV2-T (no oversized conv)'``, a cost-accounting variant without
   the oversized convolution, to see what the rest of the model costs.

It prints a table and writes JSON. It needs PyTorch and mmengine (for the
backbone's base class); ConvNeXt-T and Swin-T come from mmpretrain, or from
timm where mmpretrain is missing. On a machine with PyTorch alone (such as a
bare GPU box), carry these wheels and put them on PYTHONPATH: mmengine
0.10.7, addict, yapf, termcolor, platformdirs (timm, numpy, rich, pyyaml and
opencv are usually there already).
"""
import argparse
import contextlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import torch

from mmparcnet.models import ParCNetV2
from mmparcnet.models.backbones.parcnetv2 import SpatialBGU
from mmparcnet.models.layers.oversized_conv import stage_map_sizes
from mmparcnet.models.layers.pointwise import gelu
from mmparcnet.models.layers.runtime import fast_paths
from mmparcnet.tools import resident_memory

# -- timing -------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], None], device: torch.device, warmup: int,
            repeats: int) -> Dict[str, Optional[float]]:
    """Median milliseconds of ``fn`` and peak memory (MiB, CUDA only)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            start_time = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start_time) * 1e3)
    peak = None
    if device.type == 'cuda':
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return dict(ms=statistics.median(times), peak_mib=peak)


def _autocast(device: torch.device, dtype: str):
    if dtype == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


# -- part 1: the oversized convolution ---------------------------------------


def stage_shapes(height: int, width: int) -> List[tuple]:
    """(C, h, w) of ParCNetV2-T's four stages for an input of height x
    width."""
    dims = ParCNetV2.arch_settings['tiny']['dims']
    return list(zip(dims, stage_map_sizes(height), stage_map_sizes(width)))


CONV_IMPLS = ('direct', 'fft', 'matmul')


def bench_oversized_conv(device,
                         batch,
                         height,
                         width,
                         warmup,
                         repeats,
                         dtypes=('fp32', )) -> List[dict]:
    """Every implementation at the four stage shapes, in each of ``dtypes``
    (bf16: a bf16 map and float32 kernels under bf16 autocast, as the
    backbone meets them in mixed precision)."""
    from mmparcnet.models.layers.oversized_conv import (choose_impl,
                                                        oversized_conv,
                                                        stored_kernel_lengths)
    rows = []
    lengths = stored_kernel_lengths(224)
    for dtype in dtypes:
        map_dtype = torch.bfloat16 if dtype == 'bf16' else torch.float32
        for stage, (channels, h, w) in enumerate(stage_shapes(height, width)):
            # channel-major planes seen as NCHW, as the backbone hands them
            x = torch.randn(
                channels, batch, h, w, device=device,
                dtype=map_dtype).transpose(0, 1)
            k_h = torch.randn(channels, 1, lengths[stage], 1, device=device)
            k_w = torch.randn(channels, 1, 1, lengths[stage], device=device)
            row = dict(stage=stage, dtype=dtype, shape=[batch, channels, h, w])
            for impl in CONV_IMPLS:

                def forward():
                    with torch.no_grad(), _autocast(device, dtype):
                        oversized_conv(x, k_h, k_w, 'interpolate', impl)

                xg = x.detach().clone().requires_grad_(True)
                kh = k_h.detach().clone().requires_grad_(True)
                kw = k_w.detach().clone().requires_grad_(True)

                def forward_backward():
                    with _autocast(device, dtype):
                        out = oversized_conv(xg, kh, kw, 'interpolate', impl)
                    out.float().sum().backward()

                row[f'{impl}_fwd_ms'] = measure(forward, device, warmup,
                                                repeats)['ms']
                row[f'{impl}_fwdbwd_ms'] = measure(forward_backward, device,
                                                   warmup, repeats)['ms']
            for key, training in (('fwd', False), ('fwdbwd', True)):
                chosen = choose_impl(x.shape, 2 * h - 1, 2 * w - 1,
                                     device.type, training)
                row[f'auto_{key}'] = chosen
                row[f'speedup_{key}'] = (
                    row[f'direct_{key}_ms'] / row[f'{chosen}_{key}_ms'])
            rows.append(row)
    return rows


# -- part 2: backbones --------------------------------------------------------

BASELINES = ('ConvNeXt-T', 'Swin-T')
NO_OVERSIZED_CONV = 'ParCNetV2-T (no oversized conv)'


def _mmpretrain_baselines():
    from mmpretrain.models import ConvNeXt, SwinTransformer
    return {
        'ConvNeXt-T':
        lambda: ConvNeXt(
            'tiny', out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
        'Swin-T':
        lambda: SwinTransformer(
            'tiny', img_size=224, out_indices=(0, 1, 2, 3), pad_small_map=True
        ),
    }


def _timm_baselines():
    import timm
    return {
        'ConvNeXt-T':
        lambda: timm.create_model(
            'convnext_tiny', pretrained=False, features_only=True),
        'Swin-T':
        lambda: timm.create_model(
            'swin_tiny_patch4_window7_224',
            pretrained=False,
            features_only=True,
            strict_img_size=False),
    }


class _WithoutFastPaths(torch.nn.Module):
    """A model run with every fast path off (the reference computation),
    while the others in the same process keep theirs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        with fast_paths(False):
            return self.model(x)


class _SpatialBGUWithoutOversizedConv(SpatialBGU):
    """The spatial gate unit less its oversized convolution (and the sum
    with it): ``pwconv2(g * DWConv7x7(u))``. For cost accounting only: what
    ParCNetV2-T's other work costs, measured the same way."""

    def forward(self, x):
        gate, value = self.pwconv1.split(x, 2)
        return self.pwconv2(self.dwconv2(gelu(value)), gate)


def without_oversized_conv(model: ParCNetV2) -> ParCNetV2:
    """``model`` with every block's oversized convolution left out (its
    kernels stay, unused): :class:`_SpatialBGUWithoutOversizedConv`."""
    for module in model.modules():
        if type(module) is SpatialBGU:
            module.__class__ = _SpatialBGUWithoutOversizedConv
    return model


def build_backbones(names: List[str]):
    """Constructors by name, and where the baselines come from: ConvNeXt-T
    and Swin-T from mmpretrain, or timm without it. ParCNetV2-T runs with
    the automatic paths, with one oversized convolution path forced
    (``'ParCNetV2-T (direct)'`` and so on), with every fast path off
    (``'ParCNetV2-T (fast paths off)'``), or, to account for what the
    oversized convolution costs, without it (``'ParCNetV2-T (no oversized
    conv)'``: not ParCNetV2-T's outputs)."""
    builders = {
        'ParCNetV2-T':
        lambda: ParCNetV2('tiny', oversized_conv_impl='auto'),
        'ParCNetV2-T (fast paths off)':
        lambda: _WithoutFastPaths(ParCNetV2('tiny')),
        NO_OVERSIZED_CONV:
        lambda: without_oversized_conv(ParCNetV2('tiny')),
    }
    for impl in ('direct', 'fft', 'matmul'):
        builders[f'ParCNetV2-T ({impl})'] = (
            lambda impl=impl: ParCNetV2('tiny', oversized_conv_impl=impl))
    baselines = set(BASELINES) & set(names)
    source = None
    if baselines:
        try:
            builders.update(_mmpretrain_baselines())
            source = 'mmpretrain'
        except ImportError:
            try:
                builders.update(_timm_baselines())
                source = 'timm'
            except ImportError:
                raise SystemExit(
                    f'{" and ".join(sorted(baselines))} come from mmpretrain '
                    'or timm, and neither is installed: install one, or '
                    'leave them out with --backbones') from None
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise SystemExit(f'unknown backbones {unknown}; choose from '
                         f'{sorted(set(builders) | set(BASELINES))}')
    return {name: builders[name] for name in names}, source


def measure_interleaved(fns: Dict[str, Callable[[], None]],
                        device: torch.device,
                        warmup: int,
                        repeats: int,
                        pause: float = 0.) -> Dict[str, dict]:
    """Like :func:`measure` for several functions, timed in turns (one call
    of each per round), so that a change in the machine's load over the run
    (other tenants of a shared host) reaches all of them alike; ``pause``
    seconds of idling before each timed call."""
    times = {name: [] for name in fns}
    peaks = {name: None for name in fns}
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            if round_index < warmup:
                fn()
                continue
            time.sleep(pause)
            one = measure(fn, device, 0, 1)
            times[name].append(one['ms'])
            if one['peak_mib'] is not None:
                peaks[name] = max(peaks[name] or 0., one['peak_mib'])
    return {
        name: dict(ms=statistics.median(times[name]), peak_mib=peaks[name])
        for name in fns
    }


def _passes(model, run, x, device, dtype):
    """The two timed passes: ``run`` (``model`` itself, or the compiled
    model) is called, the modes are set on ``model``."""

    def forward():
        model.eval()
        with torch.no_grad(), _autocast(device, dtype):
            run(x)

    def forward_backward():
        model.train()
        with _autocast(device, dtype):
            outs = run(x)
        sum(o.float().sum() for o in outs).backward()
        model.zero_grad(set_to_none=True)

    return forward, forward_backward


def _peak_memory_child(spec_json: str) -> None:
    """Body of the process :func:`cpu_peak_memory` starts: each backbone's
    peak memory per dtype and pass, as one JSON line on stdout."""
    spec = json.loads(spec_json)
    device = torch.device('cpu')
    torch.manual_seed(0)
    builders, _ = build_backbones(spec['names'])
    x = torch.randn(spec['batch'], 3, *spec['size'])
    rows = []
    for name, build in builders.items():
        model = build()
        for dtype in spec['dtypes']:
            row = dict(backbone=name, dtype=dtype)
            forward, forward_backward = _passes(model, model, x, device, dtype)
            try:
                forward()  # thread pools and other one-time buffers
                row.update(
                    fwd_peak_mib=resident_memory.peak_mib(forward),
                    fwdbwd_peak_mib=resident_memory.peak_mib(forward_backward))
            except Exception as err:
                row['error'] = f'{type(err).__name__}: {err}'
            rows.append(row)
        del model
    print(json.dumps(rows))


def cpu_peak_memory(names: List[str], batch: int, height: int, width: int,
                    dtypes: List[str]) -> Dict[tuple, dict]:
    """Peak memory (MiB) of each backbone's forward and forward+backward on
    the CPU by ``(name, dtype)``, measured as the growth of the resident set
    in a fresh process (see :mod:`.resident_memory` for why fresh); empty,
    with the reason on stderr, where that cannot be measured."""
    reason = resident_memory.unsupported_reason()
    if reason:
        print(f'  CPU peak memory not measured: {reason}', file=sys.stderr)
        return {}
    env = resident_memory.measuring_env()
    package_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (package_root, env.get('PYTHONPATH')) if p)
    spec = dict(names=names, batch=batch, size=[height, width], dtypes=dtypes)
    child = subprocess.run([
        sys.executable, '-c', 'import sys; from mmparcnet.tools.benchmark '
        'import _peak_memory_child; _peak_memory_child(sys.argv[1])',
        json.dumps(spec)
    ],
                           env=env,
                           capture_output=True,
                           text=True)
    if child.returncode != 0:
        print(
            f'  CPU peak memory not measured: its process exited with '
            f'{child.returncode}:\n{child.stderr[-2000:]}',
            file=sys.stderr)
        return {}
    peaks = {}
    for row in json.loads(child.stdout.strip().splitlines()[-1]):
        if 'error' in row:
            print(
                f'  CPU peak memory of {row["backbone"]} in {row["dtype"]} '
                f'not measured: {row["error"]}',
                file=sys.stderr)
        else:
            peaks[row['backbone'], row['dtype']] = row
    return peaks


def bench_backbones(device,
                    batch,
                    height,
                    width,
                    dtypes,
                    warmup,
                    repeats,
                    names,
                    compile_backend=None,
                    cpu_memory=True) -> List[dict]:
    """Every backbone, timed in turns with the others (see
    :func:`measure_interleaved`); a backbone that fails is reported with
    its error and left out of the turns. With ``compile_backend`` every
    backbone runs through ``torch.compile(backend=compile_backend)`` (the
    first, untimed call of each pass compiles it). On the CPU peak memory
    comes from :func:`cpu_peak_memory` (eager only), unless ``cpu_memory``
    is False."""
    builders, source = build_backbones(names)
    x = torch.randn(batch, 3, height, width, device=device)
    models, runs, rows = {}, {}, []
    for name, build in builders.items():
        models[name] = build().to(device)
        runs[name] = (
            torch.compile(models[name], backend=compile_backend)
            if compile_backend else models[name])
    for dtype in dtypes:
        passes, failed = {}, {}
        for name, model in models.items():
            forward, forward_backward = _passes(model, runs[name], x, device,
                                                dtype)
            try:  # one call of each first: a failure must not stop the rest
                forward()
                forward_backward()
            except Exception as err:
                failed[name] = f'{type(err).__name__}: {err}'
                continue
            passes[name] = (forward, forward_backward)
        fwd = measure_interleaved({
            n: p[0]
            for n, p in passes.items()
        }, device, warmup, repeats)
        fwdbwd = measure_interleaved({
            n: p[1]
            for n, p in passes.items()
        }, device, warmup, repeats)
        for name in models:
            row = dict(
                backbone=name,
                dtype=dtype,
                source=('mmparcnet'
                        if name.startswith('ParCNetV2') else source))
            if name in failed:
                row['error'] = failed[name]
            else:
                row.update(
                    fwd_ms=fwd[name]['ms'],
                    fwd_peak_mib=fwd[name]['peak_mib'],
                    fwdbwd_ms=fwdbwd[name]['ms'],
                    fwdbwd_peak_mib=fwdbwd[name]['peak_mib'])
            rows.append(row)
        print(
            f'  measured {", ".join(models)} in {dtype}',
            file=sys.stderr,
            flush=True)
    if device.type == 'cpu' and cpu_memory and not compile_backend:
        peaks = cpu_peak_memory([
            n for n in models if any(r['backbone'] == n and 'error' not in r
                                     for r in rows)
        ], batch, height, width, dtypes)
        for row in rows:
            peak = peaks.get((row['backbone'], row['dtype']))
            if peak and 'error' not in row:
                row.update(
                    fwd_peak_mib=peak['fwd_peak_mib'],
                    fwdbwd_peak_mib=peak['fwdbwd_peak_mib'])
    for row in rows:
        base = next((r for r in rows if r['backbone'] == 'ConvNeXt-T'
                     and r['dtype'] == row['dtype'] and 'error' not in r),
                    None)
        if base and 'error' not in row:
            for key in ('fwd_ms', 'fwdbwd_ms', 'fwd_peak_mib',
                        'fwdbwd_peak_mib'):
                if row.get(key) is not None and base.get(key):
                    row[key + '_vs_convnext'] = row[key] / base[key]
    return rows


# -- part 3: exported models in ONNX Runtime ---------------------------------

ONNX_BACKBONES = ('ParCNetV2-T', 'ConvNeXt-T')
ONNX_RUNTIMES = ('eager', 'onnx_fixed', 'onnx_dynamic')
ONNX_OPSET = 17
ONNX_PAUSE = 0.05  # seconds before each timed session call


def export_onnx(model, path: str, example: torch.Tensor,
                dynamic: bool) -> None:
    """``torch.onnx.export`` as a deployment would call it: the legacy
    exporter, opset 17, height and width dynamic or fixed to ``example``'s."""
    kwargs = dict(input_names=['image'], opset_version=ONNX_OPSET)
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False  # the default from PyTorch 2.9
    if dynamic:
        kwargs['dynamic_axes'] = {'image': {2: 'height', 3: 'width'}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # tracer warnings on shape checks
        torch.onnx.export(model, (example, ), path, **kwargs)


def onnx_providers(device: torch.device) -> List[str]:
    """ONNX Runtime's providers for ``device``: CUDA's where asked for and
    installed, the CPU's otherwise (and where onnxruntime is missing)."""
    try:
        import onnxruntime
    except ImportError:
        return ['CPUExecutionProvider']
    available = onnxruntime.get_available_providers()
    if device.type == 'cuda' and 'CUDAExecutionProvider' in available:
        return ['CUDAExecutionProvider', 'CPUExecutionProvider']
    return ['CPUExecutionProvider']


# What ONNX Runtime's profiler reports, grouped: node types by what they do,
# and first, by node name, the oversized convolution (its Toeplitz products
# and, in a dynamic export, the building of the matrices)
ONNX_PROFILE_PARTS = (
    ('oversized convolution', ()),
    ('projections', ('MatMul', 'Gemm', 'FusedMatMul', 'FusedGemm')),
    ('convolutions', ('Conv', 'FusedConv')),
    ('norms', ('LayerNormalization', 'SimplifiedLayerNormalization',
               'SkipLayerNormalization')),
    ('GELU', ('Gelu', 'BiasGelu', 'FastGelu', 'Erf')),
    ('elementwise', ('Add', 'Mul', 'Sub', 'Div', 'Sqrt', 'Pow')),
    ('layout', ('Transpose', 'Reshape', 'ReorderInput', 'ReorderOutput',
                'Flatten', 'Squeeze', 'Unsqueeze', 'Concat', 'Split', 'Slice',
                'Gather', 'Expand', 'Pad')),
    ('other', ()),
)
OVERSIZED_CONV_NODES = '/dwconv1/'
# short column names for the printed table
PROFILE_LABELS = {'oversized convolution': 'oversized', 'all nodes': 'all'}


def onnx_profile_parts(events: List[dict],
                       skip_first_run: bool = False) -> Dict[str, float]:
    """ms per run of each of :data:`ONNX_PROFILE_PARTS`, and ``'all
    nodes'``, from the events of ONNX Runtime's profiler (its JSON file):
    each node's kernel time, summed and divided by the runs;
    ``skip_first_run`` leaves out the first run (a warm-up)."""
    runs = sorted((event['ts'], event['ts'] + event['dur']) for event in events
                  if event.get('name') == 'model_run')
    start = runs[0][1] if skip_first_run and runs else float('-inf')
    runs = [run for run in runs if run[0] >= start]
    if not runs:
        raise ValueError('the ONNX Runtime profile holds no model_run '
                         '(after the warm-up)')
    part_of = {op: part for part, ops in ONNX_PROFILE_PARTS for op in ops}
    parts = {part: 0. for part, _ in ONNX_PROFILE_PARTS}
    for event in events:
        name = event.get('name', '')
        if (event.get('cat') != 'Node' or not name.endswith('_kernel_time')
                or event['ts'] < start):
            continue
        if OVERSIZED_CONV_NODES in name:
            part = 'oversized convolution'
        else:
            part = part_of.get(event['args']['op_name'], 'other')
        parts[part] += event['dur'] / 1e3 / len(runs)
    parts['all nodes'] = sum(parts.values())
    return parts


def profile_onnx(path: str, providers: List[str], feed: dict,
                 runs: int) -> Dict[str, float]:
    """:func:`onnx_profile_parts` of ``runs`` runs of a fresh session (ONNX
    Runtime profiles whole sessions), after one run left out as a warm-up."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.splitext(path)[0] + '-profile'
    session = onnxruntime.InferenceSession(path, options, providers=providers)
    for _ in range(runs + 1):
        session.run(None, feed)
    profile = session.end_profiling()
    try:
        with open(profile) as file:
            return onnx_profile_parts(json.load(file), skip_first_run=True)
    finally:
        os.remove(profile)


def bench_onnx(device,
               sizes: List[Tuple[int, int]],
               warmup,
               repeats,
               names=ONNX_BACKBONES,
               profile: bool = False) -> List[dict]:
    """Each backbone in eager PyTorch, and exported for a fixed size and
    with dynamic height and width, in ONNX Runtime, at each size, batch 1,
    all timed in turns (:func:`measure_interleaved`). The dynamic export is
    made once, at 224x224; the fixed ones at the size they run. ONNX Runtime
    takes its CUDA provider where ``device`` is CUDA and the provider is
    installed, its CPU provider otherwise (and eager runs there too). With
    ``profile``, each export is run ``repeats`` times more under ONNX
    Runtime's profiler, after the timing: ``onnx_fixed_profile`` and
    ``onnx_dynamic_profile`` (:func:`onnx_profile_parts`)."""
    import onnxruntime
    providers = onnx_providers(device)
    if providers[0] == 'CPUExecutionProvider':
        device = torch.device('cpu')
    builders, source = build_backbones(list(names))
    models = {}
    for name, build in builders.items():
        models[name] = build().to(device)
        models[name].eval()  # (mmpretrain's train() returns None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        paths = {}

        def session(name, kind, example):
            path = os.path.join(
                tmp, f'{name}-{kind}-{"x".join(map(str, example.shape))}.onnx')
            export_onnx(models[name], path, example, kind == 'onnx_dynamic')
            paths[name, kind] = path
            return onnxruntime.InferenceSession(path, providers=providers)

        dynamic = {
            name:
            session(name, 'onnx_dynamic',
                    torch.randn(1, 3, 224, 224, device=device))
            for name in models
        }
        for height, width in sizes:
            x = torch.randn(1, 3, height, width, device=device)
            feed = {'image': x.cpu().numpy()}
            fns, diffs = {}, {}
            for name, model in models.items():
                with torch.no_grad():
                    expected = [o.cpu().numpy() for o in model(x)]
                sessions = dict(
                    onnx_fixed=session(name, 'onnx_fixed', x),
                    onnx_dynamic=dynamic[name])
                for kind, sess in sessions.items():
                    outs = sess.run(None, feed)
                    diffs[name, kind] = max(
                        float(abs(out - ref).max())
                        for out, ref in zip(outs, expected))
                    fns[name, kind] = (lambda sess=sess: sess.run(None, feed))

                def eager(model=model):
                    with torch.no_grad():
                        model(x)

                fns[name, 'eager'] = eager
            # eager and ONNX Runtime in separate turns: each session keeps
            # its own thread pool, whose threads spin for a while after a
            # run and slow down whatever runs next (PyTorch's OpenMP threads
            # most); a pause before each session's call lets the previous
            # pool go idle, as it would be in a deployment
            timed = measure_interleaved(
                {
                    k: f
                    for k, f in fns.items() if k[1] == 'eager'
                }, device, warmup, repeats)
            timed.update(
                measure_interleaved(
                    {
                        k: f
                        for k, f in fns.items() if k[1] != 'eager'
                    },
                    device,
                    warmup,
                    repeats,
                    pause=ONNX_PAUSE))
            for name in models:
                row = dict(
                    backbone=name,
                    input=f'{height}x{width}',
                    source=('mmparcnet'
                            if name.startswith('ParCNetV2') else source))
                for kind in ONNX_RUNTIMES:
                    row[f'{kind}_ms'] = timed[name, kind]['ms']
                    if kind != 'eager':
                        row[f'{kind}_max_diff'] = diffs[name, kind]
                    if kind != 'eager' and profile:
                        row[f'{kind}_profile'] = profile_onnx(
                            paths[name, kind], providers, feed,
                            max(repeats, 1))
                rows.append(row)
            print(
                f'  measured {", ".join(models)} exported, at '
                f'{height}x{width}',
                file=sys.stderr,
                flush=True)
    for row in rows:
        base = next(
            (r for r in rows
             if r['backbone'] == 'ConvNeXt-T' and r['input'] == row['input']),
            None)
        if base:
            for kind in ONNX_RUNTIMES:
                row[f'{kind}_ms_vs_convnext'] = (
                    row[f'{kind}_ms'] / base[f'{kind}_ms'])
    return rows


def cpu_name() -> str:
    """The CPU's model name (``platform.processor()`` is often empty)."""
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as file:
            for line in file:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


# -- report -------------------------------------------------------------------


def _fmt(value, spec='.1f'):
    return '-' if value is None else format(value, spec)


def _name_width(rows: List[dict], minimum: int) -> int:
    """The width of a printed table's backbone column."""
    return max([minimum] + [len(row['backbone']) for row in rows])


def print_report(result: dict) -> None:
    print(f'\nDevice: {result["device_name"]} ({result["device"]}), torch '
          f'{result["torch"]}, threads {result["threads"]}')
    if result.get('oversized_conv'):
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
    if result.get('backbones'):
        compiled = (f', torch.compile backend {result["compile"]}'
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
            print(f'{row["backbone"]:{width}} {row["dtype"]:5} '
                  f'{_fmt(row["fwd_ms"]):>9} '
                  f'{_fmt(row.get("fwd_ms_vs_convnext"), ".2f"):>6} '
                  f'{_fmt(row["fwdbwd_ms"]):>9} '
                  f'{_fmt(row.get("fwdbwd_ms_vs_convnext"), ".2f"):>6} '
                  f'{_fmt(row["fwdbwd_peak_mib"], ".0f"):>9} '
                  f'{_fmt(row.get("fwdbwd_peak_mib_vs_convnext"), ".2f"):>6}')
    if result.get('onnx'):
        print_onnx_report(result)


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
            cells.append(
                f'{_fmt(row[kind + "_ms"]):>8} '
                f'{_fmt(row.get(kind + "_ms_vs_convnext"), ".2f"):>6}')
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


def parse_args(argv=None):
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
        '--no-cpu-memory',
        action='store_true',
        help='on the CPU, leave out the peak memory (measured '
        'in a fresh process that runs every backbone once '
        'more)')
    parser.add_argument(
        '--json', default=None, help='also write the results to this file')
    return parser.parse_args(argv)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _parse_size(text: str) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise SystemExit(f'--onnx-sizes: {text!r} is not HxW, such as '
                         '224x224') from None
    return height, width


def main(argv=None) -> int:
    args = parse_args(argv)
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
        compile=args.compile)
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
            cpu_memory=not args.no_cpu_memory)
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
