"""Timing, as every part of the benchmark measures: median milliseconds of a
call on the CPU or on CUDA, alone or in turns with others."""
import contextlib
import platform
import statistics
import time
from typing import Callable, Dict, Optional

import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], None], device: torch.device, warmup: int,
            repeats: int) -> Dict[str, Optional[float]]:
    """Median milliseconds of ``fn`` and its peak memory.

    Args:
        fn (Callable): the call to time.
        device (torch.device): where it runs; on CUDA the time comes from
            CUDA events, on the CPU from the wall clock.
        warmup (int): untimed calls first.
        repeats (int): timed calls.

    Returns:
        dict: ``ms``, the median, and ``peak_mib``, the most memory the CUDA
        allocator held beyond what it held before (None on the CPU, where
        PyTorch counts nothing; see :mod:`.memory`).
    """
    for _ in range(warmup):
        fn()
    sync(device)
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


def measure_interleaved(fns: Dict[str, Callable[[], None]],
                        device: torch.device,
                        warmup: int,
                        repeats: int,
                        pause: float = 0.) -> Dict[str, dict]:
    """:func:`measure` for several functions, timed in turns.

    One call of each per round, so that a change in the machine's load over
    the run (other tenants of a shared host) reaches all of them alike.

    Args:
        fns (dict): the calls to time, by name.
        device (torch.device): where they run.
        warmup (int): untimed rounds first.
        repeats (int): timed rounds.
        pause (float): seconds of idling before each timed call (to let
            another runtime's thread pool go idle). Defaults to 0.

    Returns:
        dict: by name, :func:`measure`'s ``ms`` (the median over the rounds)
        and ``peak_mib`` (the most over the rounds).
    """
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


def autocast_for(device: torch.device, dtype: str):
    """The autocast context of a benchmark dtype: bf16 autocast for
    ``'bf16'``, autocast off for ``'fp32'`` (so that a caller's autocast
    does not leak into an fp32 measurement)."""
    if dtype == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def cpu_name() -> str:
    """The CPU's model name (``platform.processor()`` is often empty)."""
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as file:
            for line in file:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()
