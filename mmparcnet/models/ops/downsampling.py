"""A fast form of the downsampling layer (:mod:`..layers.downsampling`).

The plain layer's convolution reads the channels-last rows as they are (an
NCHW view with channels-last strides). On small maps on the CPU (the last
stages of a classification-size input) oneDNN's strided convolution has a
fixed cost on channels-last memory and measured up to twice as fast from
contiguous NCHW planes, copies included (docs/speed.md); on larger maps
channels-last is the faster. :mod:`.registry` says where "small" ends.
"""
import torch.nn as nn
from torch import Tensor

from .context import Context


def downsample_from_planes(layer: nn.Module, ctx: Context,
                           x: Tensor) -> Tensor:
    """The downsampling layer with its convolution reading contiguous NCHW
    planes, returning contiguous channels-last rows."""
    planes = layer.pre_norm(x).permute(0, 3, 1, 2).contiguous()
    return layer.conv(planes).permute(0, 2, 3, 1).contiguous()
