"""The downsampling layer: its fast form on small CPU maps against its
plain forward."""
import pytest
import torch

from mmparcnet.models.layers import Downsample


@pytest.mark.parametrize(
    'batch,size,planes', [(1, 14, True), (4, 16, True), (2, 32, False)],
    ids=['small map', 'small batch of maps', 'large map'])
def test_downsampling_reads_small_maps_as_planes_with_the_same_numbers(
        batch, size, planes):
    # at most registry.PLANES_MAX_POSITIONS input positions on the CPU:
    # contiguous NCHW planes; otherwise the channels-last rows as they are
    torch.manual_seed(0)
    layer = Downsample(16, 24, fast_paths=True)
    rows = torch.randn(batch, size, size, 16, requires_grad=True)
    contiguous_inputs = []
    layer.conv.register_forward_pre_hook(
        lambda module, args: contiguous_inputs.append(args[0].is_contiguous()))

    def run():
        out = layer(rows)
        return (out, *torch.autograd.grad(out.square().sum(),
                                          [rows, *layer.parameters()]))

    fast = run()
    layer.set_fast_paths(False)
    plain = run()
    assert contiguous_inputs == [planes, False]
    assert fast[0].shape == (batch, size // 2, size // 2, 24)
    assert fast[0].is_contiguous()
    for value, expected in zip(fast, plain):
        torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
