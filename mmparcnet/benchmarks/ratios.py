"""Ratios to ConvNeXt-T, the baseline every table of the benchmark compares
with: written once here for the backbones (per dtype) and the exports (per
input size)."""
from typing import Iterable, List

REFERENCE = 'ConvNeXt-T'


def ratio_key(key: str) -> str:
    """Where a row keeps ``key``'s ratio to the reference
    (``'fwd_ms'`` -> ``'fwd_ms_vs_convnext'``)."""
    return key + '_vs_convnext'


def add_ratios(rows: List[dict], group: str, keys: Iterable[str]) -> None:
    """Add to each row, in place, each of ``keys`` divided by the same key of
    the reference's row of the same group.

    Rows with an ``'error'`` are neither divided nor divisors, and a ratio is
    left out where either value is missing (None) or the reference's is
    zero, so that no row claims a ratio it was not measured for.

    Args:
        rows (list[dict]): the measured rows, each with a ``'backbone'``.
        group (str): the row field whose value the compared rows share
            (``'dtype'``, ``'input'``).
        keys (Iterable[str]): the measured fields to divide, in the order
            their ratios are added.
    """
    keys = tuple(keys)
    for row in rows:
        if 'error' in row:
            continue
        reference = next(
            (other for other in rows if other['backbone'] == REFERENCE
             and other[group] == row[group] and 'error' not in other), None)
        if reference is None:
            continue
        for key in keys:
            if row.get(key) is not None and reference.get(key):
                row[ratio_key(key)] = row[key] / reference[key]
