"""Timing in turns (timings themselves are never asserted)."""
import torch

from mmparcnet.benchmarks import timing


def test_backbones_are_timed_in_turns():
    calls = []
    result = timing.measure_interleaved(
        {name: (lambda name=name: calls.append(name))
         for name in 'ab'},
        torch.device('cpu'),
        warmup=1,
        repeats=2)
    assert calls == ['a', 'b'] * 3
    assert set(result) == {'a', 'b'}
    assert all(r['ms'] >= 0 and r['peak_mib'] is None for r in result.values())
