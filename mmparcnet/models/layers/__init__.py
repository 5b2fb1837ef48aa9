"""What ParCNetV2 is: every module of the architecture, one file each, each
with a plain forward that reads as the paper's equation. How the layers are
computed faster is :mod:`mmparcnet.models.ops`."""
from .block import ParCNetV2Block, Stage
from .downsampling import Downsample, Stem
from .gate_units import ChannelBGU, SpatialBGU
from .geometry import stage_map_sizes, stored_kernel_lengths
from .norm import ChannelNorm
from .oversized_conv import OversizedConv
from .residual import DropPath, ResScale, drop_path

__all__ = [
    'ChannelBGU', 'ChannelNorm', 'Downsample', 'DropPath', 'OversizedConv',
    'ParCNetV2Block', 'ResScale', 'SpatialBGU', 'Stage', 'Stem', 'drop_path',
    'stage_map_sizes', 'stored_kernel_lengths'
]
