"""The backbones' peak CPU memory, each measured in a fresh process.

PyTorch counts no CPU memory, so the benchmark reads the growth of the
resident set (:mod:`.resident_memory`), which follows the tensors only in a
process started with a fixed malloc threshold, and where nothing is timed
(every fresh page costs a page fault there). :func:`cpu_peak_memory` starts
that process, ``python -m mmparcnet.benchmarks.memory SPEC``, which builds
each backbone, runs it once more and prints the peaks as one JSON line.
"""
import json
import os
import subprocess
import sys
from typing import Dict, List

import torch

import mmparcnet
from . import resident_memory

MODULE = 'mmparcnet.benchmarks.memory'  # run as the fresh process


def cpu_peak_memory(names: List[str], batch: int, height: int, width: int,
                    dtypes: List[str]) -> Dict[tuple, dict]:
    """Peak memory (MiB) of each backbone's forward and forward+backward on
    the CPU, measured as the growth of the resident set in a fresh process.

    Args:
        names (list[str]): backbones, as :func:`.backbones.build_backbones`
            knows them.
        batch (int): the batch size.
        height (int): the input height.
        width (int): the input width.
        dtypes (list[str]): ``'fp32'``, ``'bf16'`` (autocast).

    Returns:
        dict: by ``(name, dtype)``, the child's row with ``fwd_peak_mib`` and
        ``fwdbwd_peak_mib``; empty, with the reason on stderr, where that
        cannot be measured (a pair that failed there is left out, its error
        on stderr).
    """
    reason = resident_memory.unsupported_reason()
    if reason:
        print(f'  CPU peak memory not measured: {reason}', file=sys.stderr)
        return {}
    env = resident_memory.measuring_env()
    # the child must import this very mmparcnet, installed or not
    package_root = os.path.dirname(
        os.path.dirname(os.path.abspath(mmparcnet.__file__)))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (package_root, env.get('PYTHONPATH')) if p)
    spec = dict(names=names, batch=batch, size=[height, width], dtypes=dtypes)
    child = subprocess.run([sys.executable, '-m', MODULE,
                            json.dumps(spec)],
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


def measure_in_this_process(spec: dict) -> List[dict]:
    """The fresh process's work: each backbone's peak memory per dtype and
    pass (``spec``: :func:`cpu_peak_memory`'s arguments).

    Only valid in a process started with
    :func:`.resident_memory.measuring_env`.
    """
    # imported here, not at the top: .backbones imports this module (its
    # cpu_peak_memory) when it measures on the CPU
    from .backbones import build_backbones, timed_passes
    device = torch.device('cpu')
    torch.manual_seed(0)
    builders, _ = build_backbones(spec['names'])
    x = torch.randn(spec['batch'], 3, *spec['size'])
    rows = []
    for name, build in builders.items():
        model = build()
        for dtype in spec['dtypes']:
            row = dict(backbone=name, dtype=dtype)
            forward, forward_backward = timed_passes(model, model, x, device,
                                                     dtype)
            try:
                forward()  # thread pools and other one-time buffers
                row.update(
                    fwd_peak_mib=resident_memory.peak_mib(forward),
                    fwdbwd_peak_mib=resident_memory.peak_mib(forward_backward))
            except Exception as err:
                row['error'] = f'{type(err).__name__}: {err}'
            rows.append(row)
        del model
    return rows


if __name__ == '__main__':
    print(json.dumps(measure_in_this_process(json.loads(sys.argv[1]))))
