"""Part 1 of the benchmark: the oversized convolution alone.

Every implementation (direct, FFT, matmul), forward and forward+backward, at
the four stage shapes ParCNetV2-T meets on an input (a detection input,
800x1216, by default), in each dtype asked for (bf16: a bf16 map under
autocast), with the path the automatic choice takes
(:func:`~mmparcnet.models.ops.registry.choose_impl`) and its speed-up over
the direct path.
"""
from typing import List, Sequence

import torch

from mmparcnet.models import ParCNetV2
from mmparcnet.models.layers.geometry import (stage_map_sizes,
                                              stored_kernel_lengths)
from mmparcnet.models.ops.oversized import oversized_conv
from mmparcnet.models.ops.registry import choose_impl
from .timing import autocast_for, measure

CONV_IMPLS = ('direct', 'fft', 'matmul')


def stage_shapes(height: int, width: int) -> List[tuple]:
    """(C, h, w) of ParCNetV2-T's four stages for an input of height x
    width."""
    dims = ParCNetV2.arch_settings['tiny']['dims']
    return list(zip(dims, stage_map_sizes(height), stage_map_sizes(width)))


def bench_oversized_conv(device: torch.device,
                         batch: int,
                         height: int,
                         width: int,
                         warmup: int,
                         repeats: int,
                         dtypes: Sequence[str] = ('fp32', )):
    """Every implementation at the four stage shapes, in each of ``dtypes``.

    bf16 means a bf16 map and float32 kernels under bf16 autocast, as the
    backbone meets them in mixed precision. The kernels have the stored
    lengths of a 224-pixel checkpoint, resized to each map (interpolate
    mode).

    Returns:
        list[dict]: a row per dtype and stage: ``stage``, ``dtype``,
        ``shape`` (N, C, H, W), ``{impl}_fwd_ms`` and ``{impl}_fwdbwd_ms``
        for each of :data:`CONV_IMPLS`, and per pass (``fwd``, ``fwdbwd``)
        ``auto_{pass}``, the automatic choice, and ``speedup_{pass}``, the
        direct path's time over the choice's.
    """
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
                    with torch.no_grad(), autocast_for(device, dtype):
                        oversized_conv(x, k_h, k_w, 'interpolate', impl)

                xg = x.detach().clone().requires_grad_(True)
                kh = k_h.detach().clone().requires_grad_(True)
                kw = k_w.detach().clone().requires_grad_(True)

                def forward_backward():
                    with autocast_for(device, dtype):
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
