"""The two bifurcate gate units of a ParCNetV2 block.

Both take and return channels-last maps (N, H, W, C). Their plain forwards
are the paper's equations; the fast implementations (channel-major planes,
oneDNN, in-place and memory-saving forms, export forms) are in
:mod:`..ops.gate_units` and :mod:`..ops.registry` picks among them when a
unit is built.
"""
from typing import Optional

import torch.nn as nn
from torch import Tensor

from ..ops.compat import gelu
from ..ops.registry import choose
from .oversized_conv import OversizedConv


class SpatialBGU(nn.Module):
    """Spatial bifurcate gate unit, the token mixer (paper Eq. 3).

    ``g, u = split(pwconv1(x))``; ``u = GELU(u)``;
    ``out = pwconv2(g * (OversizedConv(u) + DWConv7x7(u)))``.

    Args:
        channels (int): number of channels.
        kernel_length (int): the stored oversized kernel length.
        kernel_mode (str): ``'interpolate'`` or ``'fixed'``. Defaults to
            ``'interpolate'``.
        oversized_conv_impl (str): see :class:`.OversizedConv`. Defaults to
            ``'auto'``.
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 kernel_length: int,
                 kernel_mode: str = 'interpolate',
                 oversized_conv_impl: str = 'auto',
                 fast_paths: Optional[bool] = None):
        super().__init__()
        self.pwconv1 = nn.Conv2d(channels, 2 * channels, 1)
        self.dwconv1 = OversizedConv(channels, kernel_length, kernel_mode,
                                     oversized_conv_impl, fast_paths)
        self.dwconv2 = nn.Conv2d(
            channels, channels, 7, padding=3, groups=channels, bias=False)
        self.pwconv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.set_fast_paths(fast_paths)

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose how this unit is computed (None: the process-wide
        switch)."""
        self.compute = choose('spatial_bgu', type(self).plain_forward, enabled)
        # the 7x7 convolution inside the fast forms
        self.local = choose('local_conv', type(self).plain_local, enabled)

    def __setstate__(self, state):
        super().__setstate__(state)
        if 'local' not in self.__dict__:  # pickled before it existed
            self.local = choose('local_conv', type(self).plain_local)

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(self, x)

    def plain_local(self, value: Tensor) -> Tensor:
        return self.dwconv2(value)

    def plain_forward(self, x: Tensor) -> Tensor:
        gate, value = self.pwconv1(x.permute(0, 3, 1, 2)).chunk(2, dim=1)
        value = gelu(value)
        out = self.pwconv2(gate * (self.dwconv1(value) + self.dwconv2(value)))
        return out.permute(0, 2, 3, 1)


class ChannelBGU(nn.Module):
    """Channel bifurcate gate unit, the channel mixer (paper Eq. 4).

    ``a, b = split(fc1(x))`` (2.5C each); ``out = fc2(a * GELU(b))``.

    Args:
        channels (int): number of channels (even).
        fast_paths (bool, optional): whether fast implementations may run;
            None: the process-wide switch. Defaults to None.
    """

    def __init__(self, channels: int, fast_paths: Optional[bool] = None):
        super().__init__()
        hidden = channels * 5 // 2
        self.fc1 = nn.Linear(channels, 2 * hidden)
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.set_fast_paths(fast_paths)

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose how this unit is computed (None: the process-wide
        switch)."""
        self.compute = choose('channel_bgu', type(self).plain_forward, enabled)

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(self, x)

    def plain_forward(self, x: Tensor) -> Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(value * gelu(gate))
