"""Reading the toolboxes' own tools: their metrics from what they print."""
import os.path as osp
import sys

from mmparcnet.toolbox_runs import metrics, mim_command, toolbox_env


def test_metrics_are_the_last_values_the_evaluators_print():
    output = '\n'.join([
        '12/01 10:00:00 - mmengine - INFO - Epoch(val) [4][24/24]    '
        'coco/bbox_mAP: 0.1000  coco/bbox_mAP_50: 0.2000  '
        'coco/bbox_mAP_75: 0.0500  coco/segm_mAP: 0.0800',
        '12/01 10:05:00 - mmengine - INFO - Epoch(val) [8][24/24]    '
        'coco/bbox_mAP: 0.9110  coco/bbox_mAP_50: 1.0000  '
        'coco/segm_mAP: 0.9290  coco/segm_mAP_50: 1.0000',
        '12/01 10:06:00 - mmengine - INFO - Epoch(test) [15/15]    '
        'accuracy/top1: 87.5000  accuracy/top5: 100.0000',
    ])
    assert metrics(output) == dict(
        bbox_mAP=0.911,
        bbox_mAP_50=1.0,
        segm_mAP=0.929,
        segm_mAP_50=1.0,
        top1=0.875)
    assert metrics('Epoch(train) [1][10/24]  loss: 1.5') == {}
    assert metrics('coco/bbox_mAP: -1.0000') == dict(bbox_mAP=-1.0)


def test_mim_is_this_environments_where_it_has_one(monkeypatch, tmp_path):
    own = tmp_path / 'bin'
    own.mkdir()
    monkeypatch.setattr(sys, 'executable', str(own / 'python'))
    assert mim_command() == ['mim']  # none beside this interpreter: PATH's
    (own / 'mim').write_text('')
    assert mim_command() == [osp.join(str(own), 'mim')]
    assert toolbox_env()['PYTHONUNBUFFERED'] == '1'
