"""Parameter and MAC counts, the way the paper's tables count them."""
from typing import Sequence

import torch
from torch import nn

from ..models import ParCNetV2


class ClassifierForCounting(nn.Module):
    """The published classifier's shape: backbone (pooled, final LayerNorm)
    and a linear head. For counting only; training uses mmpretrain's
    ``ImageClassifier`` with the same backbone config."""

    def __init__(self, arch='tiny', num_classes: int = 1000, **kwargs):
        super().__init__()
        # MACs are counted on the direct convolutions, as the paper does
        kwargs.setdefault('oversized_conv_impl', 'direct')
        self.backbone = ParCNetV2(
            arch, out_indices=(-1, ), gap_before_final_norm=True, **kwargs)
        self.head = nn.Linear(self.backbone.dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass, as mmengine's FlopAnalyzer
    counts them (the convention of the paper's tables)."""
    from mmengine.analysis import FlopAnalyzer
    was_training = model.training
    model.eval()
    analyzer = FlopAnalyzer(model, torch.zeros(*input_shape))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    total = analyzer.total()
    model.train(was_training)
    return int(total)
