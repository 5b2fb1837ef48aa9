from . import init  # noqa: F401  (registers the TruncNormalFanOut initializer)
from .backbones import ParCNetV2
from .classifier import ParCNetV2Classifier
from .compiling import compile_blocks

__all__ = ['ParCNetV2', 'ParCNetV2Classifier', 'compile_blocks']
