from .oversized_conv import (oversized_conv, resize_kernel,
                             stored_kernel_lengths)

__all__ = ['oversized_conv', 'resize_kernel', 'stored_kernel_lengths']
