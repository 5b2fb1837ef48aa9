"""Regional compilation: ``torch.compile`` block by block.

Compiling a whole backbone traces all of its blocks, forward and backward,
as one graph (ParCNetV2-T: 21 blocks; minutes, and again for every input
size that changes a stage's path). Compiled one at a time, the blocks of a
stage are one piece of code with other parameters, so they share a compiled
graph: a handful of graphs a model (per stage; a stage's first block,
which receives the downsampling's output, may get its own), traced in
seconds. Each block is compiled in place (``nn.Module.compile``), so that
its parameters keep their names and checkpoints load as before; what runs
between the blocks (stem, downsampling, norms) stays eager.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from .layers.block import ParCNetV2Block, Stage

# where Dynamo inlines nn modules by default (the blocks of a stage share
# graphs) and inductor trains at dynamic sizes; on 2.1.2 neither holds (a
# graph per block; ``'SymInt' object has no attribute 'shape'``)
MIN_TORCH = (2, 5)

# Dynamo keeps at most ``recompile_limit`` graphs per piece of code (the
# blocks' forward): four stages, two input types, training and inference,
# and each oversized-convolution path a stage's size can take
RECOMPILE_LIMIT = 64


def _is_block(module: nn.Module) -> bool:
    """The default of :func:`compile_blocks`: ParCNetV2's blocks."""
    return isinstance(module, ParCNetV2Block)


def compile_blocks(model: nn.Module,
                   is_block: Optional[Callable[[nn.Module], bool]] = None,
                   **compile_kwargs) -> int:
    """Compile every block of ``model`` in place with ``torch.compile``.

    Args:
        model (nn.Module): a ParCNetV2 backbone, or any model holding one.
        is_block (Callable, optional): which modules to compile (the
            outermost ones for which it is true); default: ParCNetV2's
            blocks.
        **compile_kwargs: ``torch.compile``'s arguments; ``dynamic``
            defaults to True (one graph for the sizes of a multi-scale
            schedule).

    A copy of the model (``copy.deepcopy``, as EMA hooks make, or a
    pickle) runs its blocks eager: PyTorch does not copy a module's
    compiled call.

    Returns:
        int: how many blocks were compiled.

    Raises:
        RuntimeError: on PyTorch < 2.5 (:data:`MIN_TORCH`).
        ValueError: where ``model`` has no such block.
    """
    is_block = is_block or _is_block
    compile_kwargs.setdefault('dynamic', True)
    blocks = []

    def collect(module: nn.Module) -> None:
        for child in module.children():
            if is_block(child):
                blocks.append(child)
            else:
                collect(child)

    collect(model)
    if not blocks:
        raise ValueError(f'{type(model).__name__} holds no block to compile')
    if not torch_supports_compile_blocks():
        raise RuntimeError(
            'compiling the blocks needs PyTorch >= 2.5 (where the blocks of '
            'a stage share their graphs and inductor trains at dynamic '
            f'sizes); this is {torch.__version__}')
    _raise_recompile_limit(RECOMPILE_LIMIT)
    for block in blocks:
        block.compile(**compile_kwargs)
    # a stage's fused residual stream would call around the blocks' forward
    compiled = set(map(id, blocks))
    for module in model.modules():
        if isinstance(module, Stage) and any(
                id(block) in compiled for block in module):
            module.blocks_compiled = True
            module.set_fast_paths(False)
    return len(blocks)


def torch_supports_compile_blocks() -> bool:
    """Whether this PyTorch is at least :data:`MIN_TORCH`."""
    release = torch.__version__.split('+')[0].split('.')[:2]
    return tuple(int(part) for part in release) >= MIN_TORCH


def _raise_recompile_limit(limit: int) -> None:
    """At least ``limit`` graphs per piece of code (the setting's name
    changed in PyTorch 2.6: ``cache_size_limit`` before)."""
    config = torch._dynamo.config
    name = ('recompile_limit'
            if hasattr(config, 'recompile_limit') else 'cache_size_limit')
    if getattr(config, name) < limit:
        setattr(config, name, limit)
