"""A ParCNetV2 block, and a stage of them."""
from typing import Optional

import torch.nn as nn
import torch.utils.checkpoint as cp
from torch import Tensor

from ..ops.context import shared_sizes
from ..ops.registry import choose
from .gate_units import ChannelBGU, SpatialBGU
from .norm import ChannelNorm
from .residual import DropPath, ResScale


class ParCNetV2Block(nn.Module):
    """One ParCNetV2 block on channels-last maps (paper Fig. 2)::

        x = rs1(x) + DropPath(SpatialBGU(norm1(x)))
        x = rs2(x) + DropPath(ChannelBGU(norm2(x)))

    The ResScales ``rs1``/``rs2`` exist in the last two stages only.

    Args:
        channels (int): number of channels.
        kernel_length (int): the stored oversized kernel length.
        kernel_mode (str): ``'interpolate'`` or ``'fixed'``. Defaults to
            ``'interpolate'``.
        oversized_conv_impl (str): see :class:`.OversizedConv`. Defaults to
            ``'auto'``.
        drop_path_rate (float): stochastic depth rate. Defaults to 0.
        res_scale (bool): learnable scales on both residual paths. Defaults
            to False.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_length: int,
                 kernel_mode: str = 'interpolate',
                 oversized_conv_impl: str = 'auto',
                 drop_path_rate: float = 0.,
                 res_scale: bool = False,
                 fast_paths: Optional[bool] = None):
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.token_mixer = SpatialBGU(channels, kernel_length, kernel_mode,
                                      oversized_conv_impl, fast_paths)
        self.norm2 = ChannelNorm(channels)
        self.mlp = ChannelBGU(channels, fast_paths)
        self.drop_path = DropPath(drop_path_rate)
        self.res_scale1 = ResScale(channels) if res_scale else nn.Identity()
        self.res_scale2 = ResScale(channels) if res_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.res_scale1(x) + self.drop_path(
            self.token_mixer(self.norm1(x)))
        x = self.res_scale2(x) + self.drop_path(self.mlp(self.norm2(x)))
        return x


class Stage(nn.Sequential):
    """A stage's blocks on channels-last maps of one size.

    Args:
        *blocks (ParCNetV2Block): the blocks, in order.
        with_cp (bool): gradient checkpointing on every block (while
            autograd records the input), saving memory at the cost of
            speed. Defaults to False.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self,
                 *blocks: nn.Module,
                 with_cp: bool = False,
                 fast_paths: Optional[bool] = None):
        super().__init__(*blocks)
        self.with_cp = with_cp
        # set by compile_blocks: the stream then goes through the blocks'
        # compiled forwards
        self.blocks_compiled = False
        self.set_fast_paths(fast_paths)

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose how the stage's residual stream is computed (None: the
        process-wide switch; the plain way where the blocks are compiled).
        """
        self.compute = choose('stage',
                              type(self).plain_forward,
                              False if self.blocks_compiled else enabled)

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(self, x)

    def plain_forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            for block in self:
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        # exporting: the blocks share the sizes' nodes
        with shared_sizes(
                batch=x.shape[0], height=x.shape[1], width=x.shape[2]):
            for block in self:
                x = block(x)
            return x
