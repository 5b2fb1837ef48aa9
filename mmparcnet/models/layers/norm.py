"""ParCNetV2's channel norm."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops.compat import LAYER_NORM_IS_EXACT


class ChannelNorm(nn.LayerNorm):
    """ParCNetV2's channel norm ("LNG") on channels-last tensors.

    ``y = (x - mean) / max(||x - mean||_2, eps) * weight``: a scale-only
    LayerNorm whose divisor is the L2 norm over channels, not the RMS. It is
    computed as one fused ``F.layer_norm`` with the scale divided by
    sqrt(C): the L2 norm is sqrt(C) times the standard deviation, and an
    epsilon of ``eps**2 / C`` inside the square root stands in for the
    ``max`` (the two differ only where the centred vector is shorter than
    ``eps``). Where that call is not exact on constant vectors (PyTorch 2.1,
    :data:`~..ops.compat.LAYER_NORM_IS_EXACT`), the formula is written out.

    It is an ``nn.LayerNorm`` without bias (its one parameter is ``weight``,
    as in the published checkpoints), so that what recognises norms by
    class sees it as one: mmengine's optimizer constructors
    (``norm_decay_mult``), ``init_cfg`` rules for ``layer='LayerNorm'``.

    Args:
        channels (int): number of channels (the last dimension).
        eps (float): lower bound of the norm. Defaults to 1e-6.
        fused (bool, optional): compute by ``F.layer_norm``; None: where
            that is exact. Operator counters set it True: mmengine's
            FlopAnalyzer counts a norm by its ``layer_norm`` op and sees
            nothing of the written-out form. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 eps: float = 1e-6,
                 fused: Optional[bool] = None):
        super().__init__(channels, eps=eps, bias=False)
        self.fused = LAYER_NORM_IS_EXACT if fused is None else fused

    def forward(self, x: Tensor) -> Tensor:
        channels = self.weight.shape[0]
        if self.fused:
            return F.layer_norm(x, (channels, ), self.weight * channels**-0.5,
                                None, self.eps * self.eps / channels)
        return self.plain_forward(x)

    def plain_forward(self, x: Tensor) -> Tensor:
        """The formula written out, in float32 at least and back to x's
        type, as ``F.layer_norm`` computes."""
        wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        # shifted by the first channel first, so that a constant vector
        # centres to exact zeros (x - mean(x) alone leaves rounding noise)
        shifted = wide - wide[..., :1]
        centred = shifted - shifted.mean(dim=-1, keepdim=True)
        return (centred *
                torch.rsqrt(centred.square().sum(dim=-1, keepdim=True) +
                            self.eps * self.eps) * self.weight).to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'
