from .toy import CLASSES, make_ade20k, make_coco, make_imagenet

__all__ = ['CLASSES', 'make_ade20k', 'make_coco', 'make_imagenet']
