"""Random number generator states in checkpoints, for exact resumption.

mmengine restores the model, optimizer, schedulers and the sampler's epoch on
``--resume``, but not the global generators that data augmentations
(``random``, ``numpy``) and the model itself (stochastic depth, dropout:
``torch``) draw from. A resumed run then diverges from an uninterrupted one.
``RNGStateHook`` saves those generators with every checkpoint and puts them
back where the uninterrupted run would be:

- epoch-based loops resume at an epoch boundary: the states go back before
  the next epoch's data loader starts;
- iteration-based loops replay the data loader up to the resumed iteration
  (mmengine skips the batches already seen, drawing the augmentations'
  numbers from ``random`` and ``numpy`` again from the same seed), so only
  the generators the replay does not touch, torch's, go back, at the first
  iteration.

Validation also draws from torch's generator (every data loader iterator
takes a seed from it), and a killed job resumes without the validation that
followed its last checkpoint. So the hook makes validation invisible to
training: the generators go back after each validation to where they were
before it. A run with the hook is then a function of its seed whatever the
validation interval, and a resumed run repeats an uninterrupted one.

The states hold only tensors, numpy arrays and plain Python values, so the
checkpoint still loads with ``weights_only=True`` once mmparcnet is
imported. Workers of a multi-process data loader are seeded per epoch by
mmengine and need nothing more.

Usage::

    custom_hooks = [dict(type='RNGStateHook')]
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

KEY = 'rng_state'


def capture() -> dict:
    """The current states of Python's, numpy's and torch's generators."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict, host: bool = True) -> None:
    """Put generator states back; ``host=False`` leaves ``random`` and
    ``numpy`` alone."""
    if host:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
        np.random.set_state(tuple(state['numpy']))
    # on a GPU host mmengine's resume loads the checkpoint onto the GPU,
    # and the generators take their states as CPU byte tensors only
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class RNGStateHook(Hook):
    """Save the global random generators with each checkpoint and restore
    them on resume (see the module docstring)."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # the iteration a resumed runner will report (mmengine counts an
        # iteration-based checkpoint as the next iteration)
        resume_iter = checkpoint.get('meta', {}).get('iter', runner.iter)
        checkpoint[KEY] = dict(iter=resume_iter, **capture())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(KEY)
        if self._pending is None:
            runner.logger.warning(
                'RNGStateHook: the checkpoint holds no generator states; '
                'the resumed run will not repeat the interrupted one exactly')

    def _restore_if_resumed(self, runner, host: bool) -> None:
        # a load_from (not a resume) leaves runner.iter at 0: keep the seed
        if self._pending is not None and runner.iter == self._pending['iter']:
            restore(self._pending, host=host)
            runner.logger.info(
                f'RNGStateHook: restored the random generators of iteration '
                f'{runner.iter}')
        self._pending = None

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None and not isinstance(
                runner.train_loop, IterBasedTrainLoop):
            self._restore_if_resumed(runner, host=True)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        if self._pending is not None:
            self._restore_if_resumed(runner, host=False)

    def before_val(self, runner) -> None:
        self._before_val = capture()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore(self._before_val)
            self._before_val = None
