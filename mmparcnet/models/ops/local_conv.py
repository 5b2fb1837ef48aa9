"""The spatial unit's 7x7 depthwise convolution read in channels-last memory,
so that on CUDA it runs on cuDNN (opt-in).

The unit hands both its depthwise convolutions the GELU'd value as
channel-major planes, an NCHW view of (C, N, H, W) memory
(:mod:`.gate_units`): the layout the Toeplitz products read in place. That
memory is neither NCHW- nor channels-last-contiguous. PyTorch gives a
depthwise convolution to cuDNN only for channels-last memory or a float16
NCHW map (``use_cudnn_depthwise`` in ATen's ``Convolution.cpp``); otherwise
its own depthwise kernels run, on a contiguous copy they make of their input.
In the one H200 profile of a bf16 training step at 800x1216, batch 2
(``resources/device_profile_h200.txt``), those kernels took about 11.7 ms a
step, for the 21 blocks' 7x7 convolutions and stage 4's direct oversized
ones; ConvNeXt-T's 7x7 convolutions, about a quarter more work, took 4.5 ms
on cuDNN's NHWC kernels. Here the copy the convolution needs anyway is made
in channels-last memory, which puts the convolution, its backward included,
on cuDNN. Its output is channels-last: the unfused gated sum reads both
layouts, :mod:`.triton.gated_sum` copies it into NCHW memory first.

Offered while :func:`enabled` (``MMPARCNET_CUDNN_LOCAL=1``, or
:func:`on_cudnn` around building a model), to eager CUDA calls
(:mod:`.registry`): opt-in until a GPU run has measured it against the
default (the benchmark's ``'ParCNetV2-T (cuDNN 7x7)'``).
"""
import contextlib
import os

import torch
import torch.nn as nn
from torch import Tensor

from .context import Context

ENV_VARIABLE = 'MMPARCNET_CUDNN_LOCAL'
_ENABLED = os.environ.get(ENV_VARIABLE, '0') == '1'


def enabled() -> bool:
    """Whether units built now are offered the channels-last 7x7
    convolution."""
    return _ENABLED


@contextlib.contextmanager
def on_cudnn(on: bool = True):
    """``with on_cudnn(): model = ParCNetV2(...)`` offers the channels-last
    7x7 convolution to the units built inside."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, bool(on)
    try:
        yield
    finally:
        _ENABLED = previous


def channels_last_local(unit: nn.Module, ctx: Context,
                        value: Tensor) -> Tensor:
    """``unit.dwconv2(value)`` with ``value`` copied into channels-last
    memory (the output is channels-last too)."""
    return unit.dwconv2(value.contiguous(memory_format=torch.channels_last))
