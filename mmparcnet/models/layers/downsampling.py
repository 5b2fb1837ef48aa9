"""The layers that shrink the map between stages (:mod:`.geometry`)."""
from typing import Optional

import torch.nn as nn
from torch import Tensor

from ..ops.registry import choose
from .geometry import DOWNSAMPLE, STEM
from .norm import ChannelNorm


class Stem(nn.Module):
    """Stage 0's downsampling: 7x7 stride-4 convolution, channel norm; NCHW
    images in, channels-last maps out."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, **STEM)
        self.post_norm = ChannelNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.post_norm(self.conv(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """A later stage's downsampling: channel norm, 3x3 stride-2 convolution;
    channels-last maps in and out.

    Args:
        in_channels (int): channels of the previous stage.
        channels (int): channels of this stage.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 fast_paths: Optional[bool] = None):
        super().__init__()
        self.pre_norm = ChannelNorm(in_channels)
        self.conv = nn.Conv2d(in_channels, channels, **DOWNSAMPLE)
        self.set_fast_paths(fast_paths)

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose how this layer is computed (None: the process-wide
        switch)."""
        self.compute = choose('downsample', type(self).plain_forward, enabled)

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(self, x)

    def plain_forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pre_norm(x).permute(0, 3, 1,
                                                  2)).permute(0, 2, 3, 1)
