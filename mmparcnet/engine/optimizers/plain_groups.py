"""Parameter groups as plain dicts, so that mmengine's ``compile=True``
works.

mmengine builds an optimizer from its config through the registry, which
turns the config, and every parameter group a constructor put into it
(``paramwise_cfg``), into ``ConfigDict`` objects: the optimizer's
``param_groups`` are then a dict subclass. Dynamo treats a dict subclass as
a user-defined object, and compiling the runner's ``train_step``
(``compile=True``) stops in the optimizer step, before the model is at
issue: on torch 2.14.1, ``AttributeError: 'UserDefinedDictVariable' object
has no attribute 'items'`` in ``torch/_dynamo/variables/optimizer.py``.
The constructors of this package hand over the same groups as plain dicts.
"""
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn


def plain_param_groups(optimizer):
    """Make ``optimizer``'s parameter groups plain dicts (and their
    ``params`` plain lists), in place; the settings are unchanged."""
    groups = optimizer.param_groups
    for index, group in enumerate(groups):
        if type(group) is not dict:
            plain = dict(group)
            plain['params'] = list(plain['params'])
            groups[index] = plain
    return optimizer


class PlainGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` (every
    ``paramwise_cfg`` rule as there), its parameter groups handed over as
    plain dicts, so that a config with ``compile=True`` compiles (see the
    module docstring). Example::

        optim_wrapper = dict(
            constructor='PlainGroupsOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
    """

    def __call__(self, model: nn.Module):
        wrapper = super().__call__(model)
        plain_param_groups(wrapper.optimizer)
        return wrapper
