"""How ParCNetV2 is computed.

:mod:`mmparcnet.models.layers` says what the model is; this package holds
every way of computing it faster, and who decides:

- :mod:`.registry`: the implementations of each operation and the rule
  that picks one (the one table to read);
- :mod:`.context`: the fast-path switch, and the one place that asks
  PyTorch what is running (tracers, device, autocast, autograd);
- :mod:`.oversized`: the oversized convolution (math note, kernel resize,
  Toeplitz builder, direct / matmul / FFT);
- :mod:`.gate_units`, :mod:`.downsampling`: the layers' fast forms;
  :mod:`.gated_linear`, :mod:`.split_projection`, :mod:`.onednn`: the
  kernels they use;
- opt-in on CUDA: :mod:`.triton` (fused kernels) and :mod:`.local_conv`
  (the 7x7 convolution on cuDNN);
- :mod:`.compat`: private PyTorch operators and PyTorch bugs worked around.
"""
from .context import fast_paths, fast_paths_enabled, set_fast_paths
from .oversized import oversized_conv
from .registry import choose_impl

__all__ = [
    'fast_paths', 'fast_paths_enabled', 'set_fast_paths', 'choose_impl',
    'oversized_conv'
]
