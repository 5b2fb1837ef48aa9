# The entry point is mmparcnet.models.layers.oversized_conv.oversized_conv;
# it is not re-exported here so that the module name stays the module.
from .oversized_conv import choose_impl, resize_kernel, stored_kernel_lengths

__all__ = ['choose_impl', 'resize_kernel', 'stored_kernel_lengths']
