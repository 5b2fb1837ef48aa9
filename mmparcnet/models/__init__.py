from . import init  # noqa: F401  (registers the TruncNormalFanOut initializer)
from .backbones import ParCNetV2

__all__ = ['ParCNetV2']
