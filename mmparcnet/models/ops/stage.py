"""Fast implementations of a stage's residual stream
(:class:`..layers.block.Stage`).

Each is ``fn(stage, ctx, x)`` for a stage, its call's :class:`.Context` and
its channels-last input (N, H, W, C). A stage's blocks read as
``x = rs(x) + DropPath(unit(norm(x)))`` twice each: every residual sum is
followed by a channel norm, the next unit's or the next block's, except the
stage's last. Computed a block at a time, each sum and norm is its own pass
over the stream; here the sums are carried across the blocks so that each
sum and the norm after it are one fused operation.
"""
import torch.nn as nn
from torch import Tensor

from .context import Context


def _scale(res_scale: nn.Module):
    """A ResScale's multiplier; None for the identity."""
    return getattr(res_scale, 'scale', None)


def stage_triton(stage: nn.Module, ctx: Context, x: Tensor) -> Tensor:
    """The stage with each residual sum and the channel norm after it as one
    Triton operator (:mod:`.triton.residual_norm`), the norms in the type
    the next projection computes in (under autocast, the autocast type)."""
    from .triton.residual_norm import residual_norm  # where Triton runs
    blocks = list(stage)
    normed = blocks[0].norm1(x)
    for index, block in enumerate(blocks):
        branch = block.drop_path(block.token_mixer(normed))
        x, normed = residual_norm(x, branch, _scale(block.res_scale1),
                                  block.norm2.weight, block.norm2.eps,
                                  ctx.dtype)
        branch = block.drop_path(block.mlp(normed))
        if index + 1 == len(blocks):
            return block.res_scale2(x) + branch
        following = blocks[index + 1].norm1
        x, normed = residual_norm(x, branch, _scale(block.res_scale2),
                                  following.weight, following.eps, ctx.dtype)
    return x
