"""Where ParCNetV2-T's mixed-precision training step spends its GPU time.

Run by ``.ci/device-benchmark.sh`` on the device: one bf16 autocast
forward+backward of ParCNetV2-T (automatic paths) and of ConvNeXt-T
(timm's or mmpretrain's, as the benchmark builds them)
at the benchmark's detection shape, profiled with ``torch.profiler``; prints
each model's CUDA time by operator and the slowest kernels.
"""
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from mmparcnet.benchmarks.backbones import build_backbones


def step(model, x):
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        outs = model(x)
    sum(o.float().sum() for o in outs).backward()
    model.zero_grad(set_to_none=True)


def main(height=800, width=1216, batch=2):
    builders, _ = build_backbones(['ParCNetV2-T', 'ConvNeXt-T'])
    models = {name: build() for name, build in builders.items()}
    cuda = torch.cuda.is_available()  # the CPU only to try the script
    device = 'cuda' if cuda else 'cpu'
    activities = [ProfilerActivity.CPU
                  ] + ([ProfilerActivity.CUDA] if cuda else [])
    key = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    x = torch.randn(batch, 3, height, width, device=device)
    for name, model in models.items():
        model = model.to(device)
        model.train()  # apart: mmpretrain's ConvNeXt.train returns None
        for _ in range(3):
            step(model, x)
        if cuda:
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            for _ in range(3):
                step(model, x)
            if cuda:
                torch.cuda.synchronize()
        averages = prof.key_averages()
        # the footer's 'Self CUDA time total' is the kernels' time (rows of
        # operators and of their kernels would count it twice)
        print(f'\n=== {name}: bf16 forward+backward, batch {batch}, '
              f'{height}x{width}, 3 steps ===')
        print(
            averages.table(
                sort_by=key, row_limit=30, max_name_column_width=70))
        model.cpu()
        if cuda:
            torch.cuda.empty_cache()


if __name__ == '__main__':
    main(*map(int, sys.argv[1:]))
