"""Part 3 of the benchmark: the exported models in ONNX Runtime.

ParCNetV2-T and ConvNeXt-T are exported with ``torch.onnx.export`` (the
legacy exporter, as MMDeploy calls it; opset 17), once for each input size
and once with dynamic height and width, and run in ONNX Runtime with default
session options beside eager PyTorch, all timed in turns, batch 1, at each
input size (the command's: the classification size, 224x224, and the
detection size). Each export's largest difference from eager is reported
too, and on request where ONNX Runtime's profiler sees the time go, by part
(:func:`onnx_profile_parts`). :data:`.backbones.NO_OVERSIZED_CONV`, a
cost-accounting variant without the oversized convolution, shows what the
rest of the model costs. It needs onnxruntime.
"""
import inspect
import json
import os
import sys
import tempfile
import warnings
from typing import Dict, List, Sequence, Tuple

import torch

from .backbones import build_backbones, source_of
from .ratios import add_ratios
from .timing import measure_interleaved

ONNX_BACKBONES = ('ParCNetV2-T', 'ConvNeXt-T')
ONNX_RUNTIMES = ('eager', 'onnx_fixed', 'onnx_dynamic')
ONNX_OPSET = 17
ONNX_PAUSE = 0.05  # seconds before each timed session call


def export_onnx(model: torch.nn.Module, path: str, example: torch.Tensor,
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


# -- where the time goes ----------------------------------------------------

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
# the exporter names nodes by module scope: the spatial gate unit's
# oversized convolution is its dwconv1
OVERSIZED_CONV_NODES = '/dwconv1/'


def onnx_profile_parts(events: List[dict],
                       skip_first_run: bool = False) -> Dict[str, float]:
    """ms per run of each of :data:`ONNX_PROFILE_PARTS`, and ``'all
    nodes'``, from the events of ONNX Runtime's profiler (its JSON file).

    Each node's kernel time, summed and divided by the runs.

    Args:
        events (list[dict]): the profile's events.
        skip_first_run (bool): leave out the first run (a warm-up).
            Defaults to False.

    Raises:
        ValueError: if the profile holds no run (after the warm-up).
    """
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


# -- the timing ---------------------------------------------------------------


def _time_in_turns(fns: dict, device: torch.device, warmup: int,
                   repeats: int) -> dict:
    """Eager PyTorch and ONNX Runtime, each in turns of its own.

    Each session keeps its own thread pool, whose threads spin for a while
    after a run and slow down whatever runs next (PyTorch's OpenMP threads
    most); a pause before each session's call lets the previous pool go
    idle, as it would be in a deployment.
    """
    timed = measure_interleaved(
        {
            k: f
            for k, f in fns.items() if k[1] == 'eager'
        }, device, warmup, repeats)
    timed.update(
        measure_interleaved({
            k: f
            for k, f in fns.items() if k[1] != 'eager'
        },
                            device,
                            warmup,
                            repeats,
                            pause=ONNX_PAUSE))
    return timed


def bench_onnx(device: torch.device,
               sizes: List[Tuple[int, int]],
               warmup: int,
               repeats: int,
               names: Sequence[str] = ONNX_BACKBONES,
               profile: bool = False) -> List[dict]:
    """Each backbone in eager PyTorch, and exported for a fixed size and
    with dynamic height and width, in ONNX Runtime, at each size, batch 1,
    all timed in turns (:func:`.timing.measure_interleaved`).

    The dynamic export is made once, at 224x224; the fixed ones at the size
    they run. ONNX Runtime takes its CUDA provider where ``device`` is CUDA
    and the provider is installed, its CPU provider otherwise (and eager
    runs there too).

    Returns:
        list[dict]: a row per size and backbone: ``backbone``, ``input``
        (HxW), ``source``, per runtime of :data:`ONNX_RUNTIMES`
        ``{runtime}_ms`` and its ratio to ConvNeXt-T at that size, per
        export ``{export}_max_diff`` (the largest ``|ONNX - eager|``) and,
        with ``profile`` (each export run ``repeats`` times more under ONNX
        Runtime's profiler, after the timing), ``{export}_profile``
        (:func:`onnx_profile_parts`).
    """
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
            timed = _time_in_turns(fns, device, warmup, repeats)
            for name in models:
                row = dict(
                    backbone=name,
                    input=f'{height}x{width}',
                    source=source_of(name, source))
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
    add_ratios(rows, 'input', [f'{kind}_ms' for kind in ONNX_RUNTIMES])
    return rows
