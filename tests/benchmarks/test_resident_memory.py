"""Peak CPU memory from the resident set, against hand-counted allocations."""
import json
import subprocess
import sys

import pytest

from mmparcnet.benchmarks import resident_memory

pytestmark = pytest.mark.skipif(
    resident_memory.unsupported_reason() is not None,
    reason=str(resident_memory.unsupported_reason()))

MEASURED = '''
import json
import torch
from mmparcnet.benchmarks.resident_memory import peak_mib

def two_blocks():
    first = torch.ones(16 * 2**20)  # 64 MiB
    second = torch.ones(8 * 2**20)  # 32 MiB while the first lives: 96
    del first, second

def many_blocks():  # 200 of 256 KiB, below what glibc would keep resident
    kept = [torch.ones(2**16) for _ in range(200)]  # 50 MiB
    del kept

print(json.dumps([peak_mib(fn) for fn in (two_blocks, two_blocks,
                                           many_blocks, many_blocks)]))
'''


def test_peak_counts_what_lives_at_once_in_every_call():
    child = subprocess.run([sys.executable, '-c', MEASURED],
                           env=resident_memory.measuring_env(),
                           capture_output=True,
                           text=True,
                           check=True)
    peaks = json.loads(child.stdout)
    # the second call of each must not find its memory still resident
    assert peaks == pytest.approx([96, 96, 50, 50], abs=3)


def test_peak_refuses_a_process_that_would_read_too_low(monkeypatch):
    monkeypatch.delenv(resident_memory.THRESHOLD_VARIABLE, raising=False)
    with pytest.raises(RuntimeError, match='MALLOC_MMAP_THRESHOLD_=65536'):
        resident_memory.peak_mib(lambda: None)
