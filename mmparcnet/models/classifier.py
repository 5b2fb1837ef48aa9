"""The published ParCNetV2 classifier as a plain module."""
from torch import nn

from .backbones import ParCNetV2


class ParCNetV2Classifier(nn.Module):
    """Backbone (global average pool, final LayerNorm) and a linear head: the
    published classifier's computation, for counting, export and analysis.
    Training uses mmpretrain's ``ImageClassifier`` with the same backbone
    config (``gap_before_final_norm=True``, ``out_indices=(3, )``).

    Args:
        arch (str | dict): backbone arch. Defaults to 'tiny'.
        num_classes (int): classes of the head. Defaults to 1000.
        **kwargs: other :class:`ParCNetV2` arguments.
    """

    def __init__(self, arch='tiny', num_classes: int = 1000, **kwargs):
        super().__init__()
        self.backbone = ParCNetV2(
            arch, out_indices=(-1, ), gap_before_final_norm=True, **kwargs)
        self.head = nn.Linear(self.backbone.dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[0])
