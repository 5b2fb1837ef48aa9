"""Ratios to ConvNeXt-T: within a group, never to or from a failed row."""
import pytest

from mmparcnet.benchmarks.ratios import add_ratios, ratio_key


def test_ratios_divide_by_convnext_of_the_same_group():
    rows = [
        dict(backbone='ParCNetV2-T', dtype='fp32', ms=6., peak=None),
        dict(backbone='ConvNeXt-T', dtype='fp32', ms=3., peak=10.),
        dict(backbone='ParCNetV2-T', dtype='bf16', ms=8., peak=4.),
        dict(backbone='ConvNeXt-T', dtype='bf16', ms=2., peak=0.),
        dict(backbone='Swin-T', dtype='bf16', error='RuntimeError: no'),
    ]
    add_ratios(rows, 'dtype', ('ms', 'peak'))
    ours, theirs = rows[0], rows[1]
    assert ours[ratio_key('ms')] == pytest.approx(2.)
    assert theirs[ratio_key('ms')] == 1. and theirs[ratio_key('peak')] == 1.
    assert ratio_key('peak') not in ours  # nothing measured to divide
    assert rows[2][ratio_key('ms')] == pytest.approx(4.)
    assert ratio_key('peak') not in rows[2]  # the reference measured zero
    assert set(rows[4]) == {'backbone', 'dtype', 'error'}
    assert ratio_key('fwd_ms') == 'fwd_ms_vs_convnext'


def test_no_ratios_without_a_measured_reference():
    rows = [
        dict(backbone='ParCNetV2-T', input='224x224', ms=6.),
        dict(backbone='ConvNeXt-T', input='64x96', ms=3.),
        dict(backbone='ConvNeXt-T', input='224x224', error='failed'),
    ]
    add_ratios(rows, 'input', ['ms'])
    assert ratio_key('ms') not in rows[0]
    assert rows[1][ratio_key('ms')] == 1.
