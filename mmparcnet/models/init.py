"""The reference initialisation of ParCNetV2's convolutions, as an mmengine
initializer so that ``init_cfg`` stays declarative."""
import math

from mmengine.model.weight_init import BaseInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn


@WEIGHT_INITIALIZERS.register_module(name='TruncNormalFanOut', force=True)
class TruncNormalFanOutInit(BaseInit):
    """Truncated normal with std ``sqrt(gain / fan_out)``, groups counted.

    ``fan_out = kh * kw * out_channels / groups``, as the reference ParCNetV2
    code computes it: a depthwise 7x7 kernel gets std sqrt(2 / 49), not
    sqrt(2 / (49 * C)) as ``Kaiming(mode='fan_out')`` would give.

    Args:
        gain (float): numerator under the square root. Defaults to 2.
        a (float): lower cut-off. Defaults to -2.
        b (float): upper cut-off. Defaults to 2.
        bias (float): value of the biases. Defaults to 0.
        bias_std (float): if positive, biases are drawn from a normal
            distribution around ``bias`` with this std instead. Training from
            scratch on zero-padded batches wants this: with zero biases, a
            padded region gives the channel norms all-equal channel vectors,
            where their gradient is 1 / eps (1e6) and compounds to inf over
            a few norms (the reference init has the same singular point).
            Defaults to 0.
        layer (str | list[str], optional): class names to initialise.
            Defaults to 'Conv2d'.
    """

    def __init__(self,
                 gain: float = 2.,
                 a: float = -2.,
                 b: float = 2.,
                 bias_std: float = 0.,
                 layer='Conv2d',
                 **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.gain, self.a, self.b = gain, a, b
        self.bias_std = bias_std

    def _init(self, module: nn.Module) -> None:
        weight = module.weight
        groups = getattr(module, 'groups', 1)
        fan_out = weight.shape[0] * weight[0][0].numel() // groups
        nn.init.trunc_normal_(
            weight, std=math.sqrt(self.gain / fan_out), a=self.a, b=self.b)
        if getattr(module, 'bias', None) is not None:
            if self.bias_std > 0:
                nn.init.normal_(module.bias, self.bias, self.bias_std)
            else:
                nn.init.constant_(module.bias, self.bias)

    def __call__(self, module: nn.Module) -> None:
        layers = set(self.layer)

        def init(m):
            if getattr(m, 'weight', None) is None:
                return
            # subclasses count as their base (as in mmengine's
            # initialisers): the gate units' 1x1 layers are Conv2d's
            names = {cls.__name__ for cls in type(m).__mro__}
            if self.wholemodule or layers & names:
                self._init(m)

        module.apply(init)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{type(self).__name__}: gain={self.gain}, a={self.a}, '
                f'b={self.b}, bias={self.bias}, bias_std={self.bias_std}')
