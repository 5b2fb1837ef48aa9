"""The stage geometry: one place for the map sizes, kernel lengths and the
smallest input, and the layers built from it."""
import pytest
import torch

from mmparcnet.models.layers import Downsample, Stem
from mmparcnet.models.layers.geometry import (min_input_size, stage_map_sizes,
                                              stored_kernel_lengths)


def test_stored_kernel_lengths_match_published():
    assert stored_kernel_lengths(224) == (111, 55, 27, 13)
    assert stored_kernel_lengths(64) == (31, 15, 7, 3)
    assert stage_map_sizes(224) == (56, 28, 14, 7)


@pytest.mark.parametrize('size', [3, 4, 7, 31, 64, 95, 224, 225, 1333])
def test_map_sizes_are_what_the_layers_produce(size):
    x = torch.randn(1, 3, size, size)
    stem, down = Stem(3, 4), Downsample(4, 4)
    with torch.no_grad():
        x = stem(x)
        sizes = [x.shape[1]]
        for _ in range(3):
            x = down(x)
            sizes.append(x.shape[1])
    assert tuple(sizes) == stage_map_sizes(size)


def test_the_smallest_input_is_the_stems():
    assert min_input_size() == 3
    assert Stem(3, 4)(torch.randn(1, 3, 3, 3)).shape[1:3] == (1, 1)
    with pytest.raises(RuntimeError):
        Stem(3, 4)(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match='no feature map'):
        stage_map_sizes(2)
