"""The repository's configs, found from a checkout or an installed package.

A checkout (or an editable install) has them in ``configs/`` beside the
package; a regular install carries a copy in ``mmparcnet/.mim/configs``, as
the OpenMMLab toolboxes ship theirs (``setup.py`` makes it).
"""
import os.path as osp

PACKAGE = osp.dirname(osp.abspath(__file__))
CANDIDATES = (osp.join(osp.dirname(PACKAGE),
                       'configs'), osp.join(PACKAGE, '.mim', 'configs'))


def configs_root() -> str:
    """The folder holding ``detection/``, ``segmentation/`` and
    ``classification/``."""
    for candidate in CANDIDATES:
        if osp.isdir(osp.join(candidate, 'detection')):
            return candidate
    raise FileNotFoundError(
        'the mmparcnet configs are in neither ' + ' nor '.join(CANDIDATES) +
        ': reinstall the package (pip install .) or run from a checkout')


def config_path(relative: str) -> str:
    """The path of one config, e.g. ``'detection/mask-rcnn_...py'``."""
    path = osp.join(configs_root(), relative)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no config {relative!r} in {configs_root()}')
    return path
