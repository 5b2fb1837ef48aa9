"""Make mmparcnet's classes buildable from MMDetection, MMSegmentation and
MMPretrain configs.

Each class goes into mmengine's root registry (``MODELS`` for the backbone,
``OPTIM_WRAPPER_CONSTRUCTORS`` for the learning-rate decay constructor),
which every toolbox's registry falls back to, and into each installed
toolbox's own registry so that scoped names (``mmdet.ParCNetV2``) work too.
A toolbox that is missing is skipped; one that is installed but fails to
import is reported with a warning, so the others keep working.
"""
import importlib
import importlib.util
import warnings

import mmengine.registry

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')


def register(registry_name: str, *classes) -> list:
    """Register ``classes`` in the registry called ``registry_name`` (for
    example ``'MODELS'``) of mmengine and of every installed toolbox; returns
    the toolboxes reached."""
    for cls in classes:
        getattr(mmengine.registry, registry_name).register_module(
            module=cls, force=True)
    reached = []
    for toolbox in TOOLBOXES:
        if importlib.util.find_spec(toolbox) is None:
            continue
        try:
            registry = getattr(
                importlib.import_module(f'{toolbox}.registry'), registry_name)
        except Exception as err:  # a broken toolbox must not hide the others
            warnings.warn(f'mmparcnet: not registered in {toolbox}, which '
                          f'failed to import: {err}')
            continue
        for cls in classes:
            registry.register_module(module=cls, force=True)
        reached.append(toolbox)
    return reached
