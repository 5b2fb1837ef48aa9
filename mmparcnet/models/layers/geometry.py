"""The stage geometry of ParCNetV2, in one place.

The stem is a 7x7 stride-4 convolution with padding 2 and every later stage
halves the map with a 3x3 stride-2 convolution with padding 1. The stem and
downsampling layers are built from :data:`STEM` and :data:`DOWNSAMPLE`; the
map sizes, the stored oversized kernel lengths and the smallest input follow
from them here.
"""
from typing import Dict, Tuple

STEM: Dict[str, int] = dict(kernel_size=7, stride=4, padding=2)
DOWNSAMPLE: Dict[str, int] = dict(kernel_size=3, stride=2, padding=1)


def conv_output_size(size: int, kernel_size: int, stride: int,
                     padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel_size) // stride + 1


def min_input_size() -> int:
    """The smallest input side the stem leaves a map for (3 pixels)."""
    size = 1
    while conv_output_size(size, **STEM) < 1:
        size += 1
    return size


def stage_map_sizes(image_size: int, num_stages: int = 4) -> Tuple[int, ...]:
    """Side length of each stage's feature map for an input side of
    ``image_size``: 224 gives (56, 28, 14, 7)."""
    sizes = []
    size = conv_output_size(image_size, **STEM)
    for _ in range(num_stages):
        if size < 1:
            raise ValueError(f'an input of {image_size} pixels leaves no '
                             f'feature map for {num_stages} stages')
        sizes.append(size)
        size = conv_output_size(size, **DOWNSAMPLE)
    return tuple(sizes)


def stored_kernel_lengths(pretrain_size: int,
                          num_stages: int = 4) -> Tuple[int, ...]:
    """Oversized kernel length of each stage, ``2m - 1`` for map size ``m``
    at the pretraining size: 224 gives (111, 55, 27, 13), the lengths of the
    published checkpoints."""
    return tuple(2 * m - 1 for m in stage_map_sizes(pretrain_size, num_stages))
