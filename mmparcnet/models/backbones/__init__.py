from .parcnetv2 import ParCNetV2

__all__ = ['ParCNetV2']
