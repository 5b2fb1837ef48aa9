"""Part 2 of the benchmark: ParCNetV2-T against ConvNeXt-T and Swin-T as
detection backbones.

Every backbone returns its four stage outputs; each is timed forward and
forward+backward, in fp32 and under bf16 autocast, with its peak memory and
its ratios to ConvNeXt-T (:mod:`.ratios`). The backbones are timed in turns,
one call of each per round (:func:`.timing.measure_interleaved`), so that a
shared machine's changing load does not favour whichever ran in a quiet
minute. With a ``torch.compile`` backend they all run compiled (compilation
left out of the timing). Peak memory comes from the CUDA allocator during
the timed calls; on the CPU, where PyTorch counts nothing, from the
resident set of a fresh process that runs each backbone once more
(:mod:`.memory`).

The backbones by name (:func:`build_backbones`): ParCNetV2-T with the
automatic paths, with one oversized convolution path forced, with every fast
path off, or without its oversized convolution (cost accounting); ConvNeXt-T
and Swin-T from mmpretrain, or from timm where mmpretrain is missing.
"""
import functools
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from mmparcnet.models import ParCNetV2
from mmparcnet.models.compiling import compile_blocks
from mmparcnet.models.layers import SpatialBGU
from mmparcnet.models.ops import local_conv
from mmparcnet.models.ops import triton as triton_kernels
from mmparcnet.models.ops.compat import gelu
from mmparcnet.models.ops.registry import Dispatch
from .ratios import add_ratios
from .timing import autocast_for, measure_interleaved, sync

BASELINES = ('ConvNeXt-T', 'Swin-T')
FAST_PATHS_OFF = 'ParCNetV2-T (fast paths off)'
TRITON = 'ParCNetV2-T (Triton)'
CUDNN_LOCAL = 'ParCNetV2-T (cuDNN 7x7)'
NO_OVERSIZED_CONV = 'ParCNetV2-T (no oversized conv)'
FORCED_IMPLS = ('direct', 'fft', 'matmul')


def _mmpretrain_baselines() -> Dict[str, Callable]:
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


def _timm_baselines() -> Dict[str, Callable]:
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


# -- the cost-accounting variant ------------------------------------------


def _local_mix(unit: SpatialBGU, value: Tensor) -> Tensor:
    """The spatial unit's depthwise mixing without the oversized
    convolution: the 7x7 branch alone, as the unit computes it."""
    return unit.local(unit, value)


def _plain_without_oversized_conv(unit: SpatialBGU, x: Tensor) -> Tensor:
    """:meth:`SpatialBGU.plain_forward` less the oversized convolution:
    ``pwconv2(g * DWConv7x7(GELU(u)))``."""
    gate, value = unit.pwconv1(x.permute(0, 3, 1, 2)).chunk(2, dim=1)
    out = unit.pwconv2(gate * _local_mix(unit, gelu(value)))
    return out.permute(0, 2, 3, 1)


def without_oversized_conv(model: ParCNetV2) -> ParCNetV2:
    """``model`` with every block's oversized convolution left out, for cost
    accounting only: what ParCNetV2-T's other work costs, measured the same
    way (not ParCNetV2-T's outputs).

    Each spatial gate unit keeps its implementations, their depthwise mixing
    replaced by the 7x7 branch alone (their ``mix`` argument), so that the
    variant takes the same paths as the model; its kernels stay, unused.
    Changed in place, and only until the next ``set_fast_paths``; a pickle
    of the variant chooses its implementations again (a
    :class:`~mmparcnet.models.ops.registry.Dispatch` is rebuilt from the
    registry's table) and gets the oversized convolution back, so build the
    variant where it runs.
    """
    for unit in model.modules():
        if not isinstance(unit, SpatialBGU):
            continue
        chosen = unit.compute
        if not isinstance(chosen, Dispatch):  # built with the fast paths off
            unit.compute = _plain_without_oversized_conv
            continue
        unit.compute = Dispatch(
            chosen.operation, _plain_without_oversized_conv, chosen.fast,
            tuple(
                impl._replace(run=functools.partial(impl.run, mix=_local_mix))
                for impl in chosen.candidates))
    return model


# -- building and running -----------------------------------------------------


def _with_triton_kernels() -> ParCNetV2:
    """ParCNetV2-T offered the opt-in Triton kernels (on CUDA;
    :mod:`mmparcnet.models.ops.triton`)."""
    if not triton_kernels.AVAILABLE:
        raise RuntimeError('the Triton kernels need Triton and PyTorch >= 2.6')
    with triton_kernels.kernels(True):
        return ParCNetV2('tiny')


def _with_cudnn_local() -> ParCNetV2:
    """ParCNetV2-T offered the opt-in channels-last 7x7 convolution (on
    CUDA; :mod:`mmparcnet.models.ops.local_conv`)."""
    with local_conv.on_cudnn(True):
        return ParCNetV2('tiny')


def source_of(name: str, baseline_source: Optional[str]) -> Optional[str]:
    """Where a backbone comes from: mmparcnet for ParCNetV2-T and its
    variants, ``baseline_source`` (mmpretrain or timm) for the others."""
    return 'mmparcnet' if name.startswith('ParCNetV2') else baseline_source


def build_backbones(
        names: List[str]) -> Tuple[Dict[str, Callable], Optional[str]]:
    """Constructors by name, and where the baselines come from.

    ParCNetV2-T runs with the automatic paths (``'ParCNetV2-T'``), with one
    oversized convolution path forced (``'ParCNetV2-T (direct)'`` and so
    on), with every fast path off (:data:`FAST_PATHS_OFF`), offered the
    opt-in Triton kernels (:data:`TRITON`) or the opt-in channels-last 7x7
    convolution (:data:`CUDNN_LOCAL`) or, to account
    for what the oversized convolution costs, without it
    (:data:`NO_OVERSIZED_CONV`: not ParCNetV2-T's outputs). ConvNeXt-T and
    Swin-T come from mmpretrain, or from timm without it; either is needed
    only where they are asked for.

    Returns:
        tuple: ``{name: constructor}`` in the order of ``names``, and
        ``'mmpretrain'``, ``'timm'`` or None (no baseline asked for).

    Raises:
        SystemExit: for an unknown name, or a baseline that neither
            mmpretrain nor timm can build here.
    """
    builders = {
        'ParCNetV2-T': lambda: ParCNetV2('tiny', oversized_conv_impl='auto'),
        FAST_PATHS_OFF: lambda: ParCNetV2('tiny', fast_paths=False),
        NO_OVERSIZED_CONV: lambda: without_oversized_conv(ParCNetV2('tiny')),
        TRITON: _with_triton_kernels,
        CUDNN_LOCAL: _with_cudnn_local,
    }
    for impl in FORCED_IMPLS:
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


def _any_block(module: torch.nn.Module) -> bool:
    """A block of any of the backbones (ParCNetV2Block, timm's and
    mmpretrain's ConvNeXtBlock, SwinTransformerBlock, SwinBlock ...)."""
    return type(module).__name__.endswith('Block')


def compiled_for(model: torch.nn.Module, backend: str, scope: str) -> Callable:
    """What the benchmark calls for ``model`` run through
    ``torch.compile``.

    Args:
        model (nn.Module): a backbone.
        backend (str): the ``torch.compile`` backend.
        scope (str): ``'model'``: the whole model, its input size fixed;
            ``'blocks'``: each block compiled in place, dynamic sizes
            (:func:`.compile_blocks`, the same rule for every backbone; a
            ParCNetV2 stage then goes through its blocks, without the
            opt-in fused stage kernel).

    Returns:
        Callable: the compiled model, or ``model`` itself with its blocks
        compiled.
    """
    if scope == 'model':
        return torch.compile(model, backend=backend)
    if scope == 'blocks':
        compile_blocks(model, is_block=_any_block, backend=backend)
        return model
    raise ValueError(f"compile scope must be 'model' or 'blocks', got "
                     f'{scope!r}')


def timed_passes(model: torch.nn.Module, run: Callable, x: Tensor,
                 device: torch.device,
                 dtype: str) -> Tuple[Callable, Callable]:
    """The two passes every backbone is measured by: forward (eval mode, no
    gradients) and forward+backward (train mode, the gradients of the sum of
    all outputs, then dropped).

    Args:
        model (nn.Module): the backbone; the modes are set on it.
        run (Callable): what is called: ``model`` itself, or the compiled
            model.
        x (Tensor): the input.
        device (torch.device): where it runs (for autocast).
        dtype (str): ``'fp32'`` or ``'bf16'`` (autocast).
    """

    def forward():
        model.eval()
        with torch.no_grad(), autocast_for(device, dtype):
            run(x)

    def forward_backward():
        model.train()
        with autocast_for(device, dtype):
            outs = run(x)
        sum(o.float().sum() for o in outs).backward()
        model.zero_grad(set_to_none=True)

    return forward, forward_backward


def bench_backbones(device: torch.device,
                    batch: int,
                    height: int,
                    width: int,
                    dtypes: List[str],
                    warmup: int,
                    repeats: int,
                    names: List[str],
                    compile_backend: Optional[str] = None,
                    cpu_memory: bool = True,
                    compile_scope: str = 'model') -> List[dict]:
    """Every backbone, timed in turns with the others.

    A backbone that fails is reported with its error and left out of the
    turns. With ``compile_backend`` every backbone runs through
    ``torch.compile(backend=compile_backend)``, whole or block by block
    (``compile_scope``, :func:`compiled_for`); the first, untimed call of
    each pass compiles it, and its time is reported. On the CPU peak memory
    comes from :func:`.memory.cpu_peak_memory` (eager only), unless
    ``cpu_memory`` is False.

    Returns:
        list[dict]: a row per dtype and backbone: ``backbone``, ``dtype``,
        ``source`` and either ``error`` or ``fwd_ms``, ``fwd_peak_mib``,
        ``fwdbwd_ms``, ``fwdbwd_peak_mib`` (None where not measured) and
        their ratios to ConvNeXt-T of the same dtype, and the seconds of
        the first call of each pass (``first_fwd_s``, ``first_fwdbwd_s``:
        compiling, where compiled).
    """
    builders, source = build_backbones(names)
    x = torch.randn(batch, 3, height, width, device=device)
    models, runs, rows, unbuilt = {}, {}, [], {}
    for name, build in builders.items():
        try:  # a backbone that cannot be built here is a result too
            models[name] = build().to(device)
        except Exception as err:
            unbuilt[name] = f'{type(err).__name__}: {err}'
            models[name] = None
            continue
        runs[name] = (
            compiled_for(models[name], compile_backend, compile_scope)
            if compile_backend else models[name])
    for dtype in dtypes:
        passes, failed, first_calls = {}, dict(unbuilt), {}
        for name, model in models.items():
            if model is None:
                continue
            forward, forward_backward = timed_passes(model, runs[name], x,
                                                     device, dtype)
            try:  # one call of each first: a failure must not stop the rest
                first_calls[name] = (_seconds(forward, device),
                                     _seconds(forward_backward, device))
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
                backbone=name, dtype=dtype, source=source_of(name, source))
            if name in failed:
                row['error'] = failed[name]
            else:
                row.update(
                    fwd_ms=fwd[name]['ms'],
                    fwd_peak_mib=fwd[name]['peak_mib'],
                    fwdbwd_ms=fwdbwd[name]['ms'],
                    fwdbwd_peak_mib=fwdbwd[name]['peak_mib'],
                    first_fwd_s=first_calls[name][0],
                    first_fwdbwd_s=first_calls[name][1])
            rows.append(row)
        print(
            f'  measured {", ".join(models)} in {dtype}',
            file=sys.stderr,
            flush=True)
    if device.type == 'cpu' and cpu_memory and not compile_backend:
        _add_cpu_peak_memory(rows, batch, height, width, dtypes)
    add_ratios(rows, 'dtype',
               ('fwd_ms', 'fwdbwd_ms', 'fwd_peak_mib', 'fwdbwd_peak_mib'))
    return rows


def _seconds(run: Callable, device: torch.device) -> float:
    """Seconds of one call of ``run``, to 0.1 s."""
    start = time.perf_counter()
    run()
    sync(device)
    return round(time.perf_counter() - start, 1)


def _add_cpu_peak_memory(rows: List[dict], batch: int, height: int, width: int,
                         dtypes: List[str]) -> None:
    """The CPU peak memory of every backbone that ran, into its rows."""
    # imported here: the fresh process of .memory builds the backbones with
    # this module
    from .memory import cpu_peak_memory
    names = dict.fromkeys(row['backbone'] for row in rows)  # in build order
    ran = [
        name for name in names
        if any(row['backbone'] == name and 'error' not in row for row in rows)
    ]
    peaks = cpu_peak_memory(ran, batch, height, width, dtypes)
    for row in rows:
        peak = peaks.get((row['backbone'], row['dtype']))
        if peak and 'error' not in row:
            row.update(
                fwd_peak_mib=peak['fwd_peak_mib'],
                fwdbwd_peak_mib=peak['fwdbwd_peak_mib'])
