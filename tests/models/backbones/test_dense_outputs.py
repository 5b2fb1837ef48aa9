"""The backbone's feature maps as a detector's RoI heads read them.

mmcv's RoIAlign (CPU and CUDA) indexes its input as contiguous NCHW
memory. Feature maps with other strides (a permuted channels-last view,
which the FPN's convolutions keep) are read scrambled: the RoI heads then
cannot learn, while the RPN, made of plain convolutions, can. torchvision's
``roi_align`` honours strides and is the independent reference here.
"""
import pytest
import torch
from torch import nn

from mmparcnet.models import ParCNetV2


@pytest.mark.requires('mmcv.ops', 'torchvision.ops')
@pytest.mark.parametrize('stride_index', [0, 1])
def test_roi_align_over_fpn_lateral_reads_the_backbone_features(stride_index):
    from mmcv.ops import RoIAlign
    from torchvision import ops as torchvision_ops
    torch.manual_seed(0)
    model = ParCNetV2(
        dict(depths=[1, 1, 1, 1], dims=[16, 32, 48, 64]), pretrain_size=64)
    model.init_weights()
    image = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        feature = model(image)[stride_index]
        # an FPN lateral convolution, as MMDetection's FPN applies first
        lateral = nn.Conv2d(feature.shape[1], 8, 1)(feature)
    scale = 1 / 4 / 2**stride_index
    rois = torch.tensor([[0, 8., 12., 70., 60.], [1, 30., 4., 150., 100.],
                         [1, 0., 0., 40., 120.]])
    got = RoIAlign(
        7, spatial_scale=scale, sampling_ratio=2, aligned=True)(lateral, rois)
    expected = torchvision_ops.roi_align(
        lateral, rois, 7, spatial_scale=scale, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
