"""Make ``ParCNetV2`` buildable from MMDetection, MMSegmentation and MMPretrain
configs.

The class goes into mmengine's root ``MODELS`` registry, which every
toolbox's registry falls back to, and into each installed toolbox's own
``MODELS`` so that scoped names (``mmdet.ParCNetV2``) work too. A toolbox
that is missing is skipped; one that is installed but fails to import is
reported with a warning, so the others keep working.
"""
import importlib
import importlib.util
import warnings

from mmengine.registry import MODELS

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def register_models(*classes) -> list:
    """Register ``classes`` everywhere; returns the toolboxes reached."""
    for cls in classes:
        MODELS.register_module(module=cls, force=True)
    reached = []
    for toolbox in TOOLBOXES:
        if importlib.util.find_spec(toolbox) is None:
            continue
        try:
            registry = importlib.import_module(f'{toolbox}.registry').MODELS
        except Exception as err:  # a broken toolbox must not hide the others
            warnings.warn(f'mmparcnet: not registered in {toolbox}, which '
                          f'failed to import: {err}')
            continue
        for cls in classes:
            registry.register_module(module=cls, force=True)
        reached.append(toolbox)
    return reached
