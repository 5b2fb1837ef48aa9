"""Running the OpenMMLab toolboxes' own tools through ``mim``, and reading
what they print.

Shared by the commands that train and evaluate with the toolboxes
(``mmparcnet-demo``, ``mmparcnet-compare-backbones``): they read the
results from the tools' output, as a user would, so that the numbers are
the toolboxes' own evaluation.
"""
import os
import os.path as osp
import re
import sys
from typing import Dict, List

# what the evaluators print: MMDetection's COCO metric (boxes, masks) and
# MMPretrain's accuracy
METRIC = re.compile(r'(coco/(?:bbox|segm)_mAP(?:_50)?|accuracy/top1): '
                    r'(-?[0-9.]+)')


def mim_command() -> List[str]:
    """How to call ``mim``: this interpreter's, where its environment has
    one (a virtualenv's scripts need not be on PATH), else the one on
    PATH."""
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    return [mim] if osp.isfile(mim) else ['mim']


def toolbox_env() -> Dict[str, str]:
    """This process's environment, with Python's output unbuffered: the
    tools' lines then arrive as they are printed, and a failed run's log
    ends where it failed."""
    return dict(os.environ, PYTHONUNBUFFERED='1')


def metrics(output: str) -> Dict[str, float]:
    """The last value of each metric the toolboxes' evaluators print.

    Args:
        output (str): what a ``mim test`` or ``mim train`` run printed.

    Returns:
        dict: those found of ``bbox_mAP``, ``bbox_mAP_50``, ``segm_mAP``,
        ``segm_mAP_50`` and ``top1`` (a fraction, where MMPretrain prints
        per cent).
    """
    found = {}
    for name, value in METRIC.findall(output):
        if name == 'accuracy/top1':
            found['top1'] = float(value) / 100
        else:
            found[name.split('/')[1]] = float(value)
    return found
