"""Parameter and MAC counts, the way the paper's tables count them."""
import copy
from typing import Sequence

import torch
from torch import nn

from ..models.classifier import ParCNetV2Classifier
from ..models.layers import ChannelNorm

# Parameters (M) and MACs (G) of each arch as the published classifier at
# 224x224 with 1000 classes, counted on the reference implementation (the
# paper's Table 1 gives them rounded: 7.4 M / 1.6 G, ..., 56 M / 12.5 G).
REFERENCE_CLASSIFIERS = {
    'xt': (7.43, 1.55),
    'tiny': (24.94, 4.27),
    'small': (39.44, 7.78),
    'base': (56.37, 12.49),
}
# The paper's Table 5: UperNet at 2048x512, parameters (M) and MACs (G).
PAPER_UPERNET = {'tiny': (55., 932.), 'small': (69., 1005.)}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ClassifierForCounting(ParCNetV2Classifier):
    """The classifier with the direct oversized convolution, whose
    multiply-adds are what the paper counts."""

    def __init__(self, arch='tiny', num_classes: int = 1000, **kwargs):
        kwargs.setdefault('oversized_conv_impl', 'direct')
        super().__init__(arch, num_classes, **kwargs)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass, as mmengine's FlopAnalyzer
    counts them (the convention of the paper's tables)."""
    from mmengine.analysis import FlopAnalyzer
    counted = copy.deepcopy(model).eval()
    # the channel norms as the layer_norm op the counter knows, on every
    # PyTorch (where that op is not exact on constant vectors, as on 2.1,
    # they are written out in elementwise operations, which it does not see)
    for module in counted.modules():
        if isinstance(module, ChannelNorm):
            module.fused = True
    analyzer = FlopAnalyzer(counted, torch.zeros(*input_shape))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())
