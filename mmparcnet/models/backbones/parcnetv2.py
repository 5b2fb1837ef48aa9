"""ParCNetV2: Oversized Kernel with Enhanced Attention (ICCV 2023).

A pure-CNN backbone whose blocks mix tokens with a spatial bifurcate gate unit
(an oversized depthwise convolution about twice the feature map, plus a 7x7
depthwise convolution, gated by a pointwise branch) and mix channels with a
channel bifurcate gate unit. This file reads top-down: the small layers, the
two gate units, the block, then the backbone. Parameter names follow the
published checkpoints, so they load as they are (see
``mmparcnet.checkpoint``).

Only PyTorch and mmengine are needed here; ``mmparcnet.registry`` makes the
class known to MMDetection, MMSegmentation and MMPretrain.
"""
import contextlib
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ..layers.oversized_conv import (IMPLEMENTATIONS, KERNEL_MODES,
                                     oversized_conv, resize_kernel,
                                     stored_kernel_lengths)
from ..layers.pointwise import (GatedConv1x1, PlanesConv1x1, gelu,
                                gelu_gated_linear)
from ..layers.runtime import fast_paths_enabled, plain_ops_needed, shared_sizes
from ..layers.torch_ops import LAYER_NORM_IS_EXACT

# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


class ChannelNorm(nn.Module):
    """ParCNetV2's channel norm ("LNG") on channels-last tensors.

    ``y = (x - mean) / max(||x - mean||_2, eps) * weight``: a scale-only
    LayerNorm whose divisor is the L2 norm over channels, not the RMS. It is
    computed as one fused ``F.layer_norm`` with the scale divided by sqrt(C)
    (written out where that call is not exact, see
    :data:`~..layers.torch_ops.LAYER_NORM_IS_EXACT`):
    the L2 norm is sqrt(C) times the standard deviation, and an epsilon of
    ``eps**2 / C`` inside the square root stands in for the ``max`` (the two
    differ only where the centred vector is shorter than ``eps``).

    Args:
        channels (int): number of channels (the last dimension).
        eps (float): lower bound of the norm. Defaults to 1e-6.

    Attributes:
        always_fused (bool): use the ``F.layer_norm`` call also where it is
            not exact, for tools that count operators rather than compute
            (:func:`fused_channel_norms`). Defaults to False.
    """
    always_fused = False

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        channels = self.weight.shape[0]
        if LAYER_NORM_IS_EXACT or self.always_fused:
            return F.layer_norm(x, (channels, ), self.weight * channels**-0.5,
                                None, self.eps * self.eps / channels)
        # shifted by the first channel first, so that a constant vector
        # centres to exact zeros (x - mean(x) alone leaves rounding noise);
        # in float32 at least and back to x's type, as layer_norm does
        wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        shifted = wide - wide[..., :1]
        centred = shifted - shifted.mean(dim=-1, keepdim=True)
        return (centred *
                torch.rsqrt(centred.square().sum(dim=-1, keepdim=True) +
                            self.eps * self.eps) * self.weight).to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'


@contextlib.contextmanager
def fused_channel_norms():
    """Run every :class:`ChannelNorm` as one ``F.layer_norm`` call, also on
    a PyTorch whose call is not exact on constant vectors: for operator
    counters (mmengine's FlopAnalyzer counts a norm by its ``layer_norm``
    op and sees nothing of the written-out form), not for computing."""
    previous = ChannelNorm.always_fused
    ChannelNorm.always_fused = True
    try:
        yield
    finally:
        ChannelNorm.always_fused = previous


class ResScale(nn.Module):
    """A learnable per-channel multiplier on the residual path."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples of a residual branch."""
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class OversizedConv(nn.Module):
    """Vertical then horizontal oversized depthwise convolution.

    The kernels live in two bias-free ``Conv2d`` modules (``conv_h``,
    ``conv_w``) so that their names and shapes match the checkpoints and the
    ``Conv2d`` initialisers reach them; the computation itself is
    :func:`~mmparcnet.models.layers.oversized_conv.oversized_conv`.

    Args:
        channels (int): number of channels.
        kernel_length (int): stored kernel length K.
        kernel_mode (str): ``'interpolate'`` or ``'fixed'``.
        impl (str): oversized convolution implementation.
    """

    def __init__(self, channels: int, kernel_length: int, kernel_mode: str,
                 impl: str):
        super().__init__()
        self.conv_h = nn.Conv2d(
            channels,
            channels, (kernel_length, 1),
            padding=(kernel_length // 2, 0),
            groups=channels,
            bias=False)
        self.conv_w = nn.Conv2d(
            channels,
            channels, (1, kernel_length),
            padding=(0, kernel_length // 2),
            groups=channels,
            bias=False)
        self.kernel_mode = kernel_mode
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        return oversized_conv(x, self.conv_h.weight, self.conv_w.weight,
                              self.kernel_mode, self.impl)

    def extra_repr(self) -> str:
        return f'kernel_mode={self.kernel_mode!r}, impl={self.impl!r}'


# ---------------------------------------------------------------------------
# Gate units and block
# ---------------------------------------------------------------------------


class SpatialBGU(nn.Module):
    """Spatial bifurcate gate unit, the token mixer (paper Eq. 3).

    ``g, u = split(pwconv1(x))``; ``u = GELU(u)``;
    ``out = pwconv2(g * (OversizedConv(u) + DWConv7x7(u)))``.

    Channels-last (N, H, W, C) in and out. In between, the maps are
    channel-major planes seen as NCHW: the 1x1 convolutions change the
    layout for free (:mod:`..layers.pointwise`).
    """

    def __init__(self, channels: int, kernel_length: int, kernel_mode: str,
                 impl: str):
        super().__init__()
        self.pwconv1 = PlanesConv1x1(channels, 2 * channels)
        self.dwconv1 = OversizedConv(channels, kernel_length, kernel_mode,
                                     impl)
        self.dwconv2 = nn.Conv2d(
            channels, channels, 7, padding=3, groups=channels, bias=False)
        self.pwconv2 = GatedConv1x1(channels, channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.pwconv1.split(x, 2)
        value = gelu(value)
        return self.pwconv2(self.dwconv1(value) + self.dwconv2(value), gate)


class ChannelBGU(nn.Module):
    """Channel bifurcate gate unit, the channel mixer (paper Eq. 4).

    ``a, b = split(fc1(x))`` (2.5C each); ``out = fc2(a * GELU(b))``, on
    channels-last rows; computed by
    :func:`..layers.pointwise.gelu_gated_linear`.
    """
    # rows per pass of the fast paths, so that a block's intermediates stay
    # in cache (docs/speed.md)
    block_rows = 4096

    def __init__(self, channels: int):
        super().__init__()
        hidden = channels * 5 // 2
        self.fc1 = nn.Linear(channels, 2 * hidden)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return gelu_gated_linear(x, self.fc1, self.fc2, self.block_rows)


class ParCNetV2Block(nn.Module):
    """One ParCNetV2 block on channels-last tensors (paper Fig. 2).

    The ResScales ``rs1``/``rs2`` exist in the last two stages only.
    """

    def __init__(self,
                 channels: int,
                 kernel_length: int,
                 kernel_mode: str,
                 impl: str,
                 drop_path_rate: float = 0.,
                 res_scale: bool = False):
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.token_mixer = SpatialBGU(channels, kernel_length, kernel_mode,
                                      impl)
        self.norm2 = ChannelNorm(channels)
        self.mlp = ChannelBGU(channels)
        self.drop_path = DropPath(drop_path_rate)
        self.res_scale1 = ResScale(channels) if res_scale else nn.Identity()
        self.res_scale2 = ResScale(channels) if res_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.res_scale1(x) + self.drop_path(
            self.token_mixer(self.norm1(x)))
        x = self.res_scale2(x) + self.drop_path(self.mlp(self.norm2(x)))
        return x


class Stem(nn.Module):
    """Stage 0's downsampling: 7x7 stride-4 convolution, channel norm."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 7, stride=4, padding=2)
        self.post_norm = ChannelNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.post_norm(self.conv(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """A later stage's downsampling: channel norm, 3x3 stride-2 convolution.

    The convolution reads the channels-last rows as they are, except on
    small maps on the CPU (at most :attr:`planes_max_positions` input
    positions, batch included: the last stages of a classification-size
    input), where oneDNN's strided convolution measured up to twice as fast
    from contiguous NCHW planes as from channels-last memory, copies
    included (docs/speed.md); on larger maps channels-last is the faster.
    A fast path: the switch in :mod:`..layers.runtime` turns it off.

    Attributes:
        planes_max_positions (int): the most input positions (batch x height
            x width) read as NCHW planes on the CPU.
    """
    planes_max_positions = 1024

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.pre_norm = ChannelNorm(in_channels)
        self.conv = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_norm(x).permute(0, 3, 1, 2)
        if self._planes_faster(x):
            return self.conv(x.contiguous()).permute(0, 2, 3, 1).contiguous()
        return self.conv(x).permute(0, 2, 3, 1)

    def _planes_faster(self, x: Tensor) -> bool:
        # first: compilers and exporters must not trace the queries below
        if plain_ops_needed() or not fast_paths_enabled():
            return False
        batch, _, height, width = x.shape
        return (x.device.type == 'cpu'
                and batch * height * width <= self.planes_max_positions)


# ---------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------

# The reference initialisation, except that conv biases are not all zero
# (see the ParCNetV2 docstring).
DEFAULT_INIT_CFG = [
    dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
    dict(type='TruncNormalFanOut', layer='Conv2d', bias_std=.02),
]


class ParCNetV2(BaseModule):
    """ParCNetV2 backbone.

    A PyTorch implementation of `ParCNetV2: Oversized Kernel with Enhanced
    Attention <https://arxiv.org/abs/2211.07157>`_ for OpenMMLab 2.0, with
    the oversized kernels resized to every input size.

    Args:
        arch (str | dict): ``'xt'``, ``'tiny'``, ``'small'``, ``'base'`` or a
            dict with ``depths`` and ``dims`` (one entry per stage).
            Defaults to ``'tiny'``.
        in_channels (int): channels of the input image. Defaults to 3.
        out_indices (Sequence[int] | int): stages whose outputs are returned;
            negative indices count from the last stage. Defaults to
            ``(0, 1, 2, 3)``.
        drop_path_rate (float): stochastic depth rate, growing linearly from
            0 over all blocks to this value. Defaults to 0.
        frozen_stages (int): stages (with their downsampling layers and output
            norms) to freeze; 0 freezes none. Defaults to 0.
        with_cp (bool): use gradient checkpointing on every block to save
            memory at the cost of speed. Defaults to False.
        kernel_mode (str): how the stored oversized kernels meet a feature
            map: ``'interpolate'`` resizes them to 2H-1 and 2W-1 taps by
            linear interpolation (the paper's multi-scale behaviour);
            ``'fixed'`` uses them as stored with zero padding K // 2 (the
            reference dense-prediction code). Defaults to ``'interpolate'``.
        pretrain_size (int): input size the oversized kernels are stored
            for; stage i keeps 2 * m_i - 1 taps for its map size m_i (111, 55,
            27, 13 at 224). Defaults to 224.
        gap_before_final_norm (bool): return, for each output stage, the
            global average pool followed by a LayerNorm with bias (the
            classifier's final norm) instead of the dense feature map after a
            channel norm. Use with ``out_indices=(3, )`` for classification.
            Defaults to False.
        oversized_conv_impl (str): how the oversized convolution is
            computed: ``'direct'`` (depthwise convolutions, as
            the reference code), ``'matmul'`` (Toeplitz GEMMs), ``'fft'``
            (FFT, O(HW log HW)) or ``'auto'`` (per shape and device, see
            :func:`~mmparcnet.models.layers.oversized_conv.choose_impl`).
            All give the same numbers up to rounding. Defaults to ``'auto'``.
        pretrained (str, optional): a checkpoint to load; the older spelling
            of ``init_cfg=dict(type='Pretrained', checkpoint=...)`` that
            MMSegmentation's ``EncoderDecoder(pretrained=...)`` passes on.
            Defaults to None.
        init_cfg (dict | list[dict], optional): initialisation config. The
            default is the reference dense-prediction initialisation
            (Linear: truncated normal, std 0.02; Conv2d: truncated normal,
            std sqrt(2 / fan_out)) except that conv biases are drawn with
            std 0.02 instead of set to 0. With zero biases, a zero-padded
            region of a batch gives every channel norm an all-equal channel
            vector, where the norm's gradient is 1 / eps (1e6); it compounds
            over the blocks to inf, and the first iteration of any config
            that pads its batches is NaN. Random biases move that region off
            the singular point: on a padded batch the gradient norm is then
            1.2x that of an unpadded one. A ``dict(type='Pretrained',
            checkpoint=PATH[, prefix=...])`` entry loads a published
            classification checkpoint, a reference dense-prediction state
            dict or an OpenMMLab checkpoint (whose values replace the init).
    """
    arch_settings = {
        'xt': {
            'depths': [3, 3, 9, 2],
            'dims': [48, 96, 192, 320]
        },
        'tiny': {
            'depths': [3, 3, 12, 3],
            'dims': [64, 128, 320, 512]
        },
        'small': {
            'depths': [3, 9, 24, 3],
            'dims': [64, 128, 320, 512]
        },
        'base': {
            'depths': [3, 9, 24, 3],
            'dims': [96, 192, 384, 576]
        },
    }
    # aliases used by the reference code and papers
    arch_aliases = {'extra_tiny': 'xt', 't': 'tiny', 's': 'small', 'b': 'base'}
    # the last two stages carry ResScale on both residual paths
    res_scale_stages = (2, 3)

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 frozen_stages: int = 0,
                 with_cp: bool = False,
                 kernel_mode: str = 'interpolate',
                 pretrain_size: int = 224,
                 gap_before_final_norm: bool = False,
                 oversized_conv_impl: str = 'auto',
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[Dict,
                                          List[Dict]]] = DEFAULT_INIT_CFG):
        if pretrained is not None:
            # what MMSegmentation's EncoderDecoder(pretrained=...) passes
            if isinstance(init_cfg, dict) and \
                    init_cfg.get('type') == 'Pretrained':
                raise ValueError('give either pretrained or a Pretrained '
                                 'init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        self.depths, self.dims = self._parse_arch(arch)
        self.num_stages = len(self.depths)
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices,
                                                   self.num_stages)
        if not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [0, {self.num_stages}]'
                             f', got {frozen_stages}')
        self.frozen_stages = frozen_stages
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f'unknown kernel_mode {kernel_mode!r}; expected '
                             f'one of {KERNEL_MODES}')
        if oversized_conv_impl not in IMPLEMENTATIONS:
            raise ValueError(f'unknown oversized_conv_impl '
                             f'{oversized_conv_impl!r}; expected one of '
                             f'{IMPLEMENTATIONS}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.kernel_mode = kernel_mode
        self.pretrain_size = pretrain_size
        self.kernel_lengths = stored_kernel_lengths(pretrain_size,
                                                    self.num_stages)
        self.gap_before_final_norm = gap_before_final_norm
        self.with_cp = with_cp

        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        rates = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            if i == 0:
                self.downsample_layers.append(Stem(in_channels, dim))
            else:
                self.downsample_layers.append(
                    Downsample(self.dims[i - 1], dim))
            first = sum(self.depths[:i])
            self.stages.append(
                nn.Sequential(*[
                    ParCNetV2Block(
                        dim,
                        self.kernel_lengths[i],
                        kernel_mode,
                        oversized_conv_impl,
                        drop_path_rate=rates[first + j],
                        res_scale=i in self.res_scale_stages)
                    for j in range(depth)
                ]))

        for i in self.out_indices:
            norm = (
                nn.LayerNorm(self.dims[i], eps=1e-6)
                if gap_before_final_norm else ChannelNorm(self.dims[i]))
            self.add_module(f'norm{i}', norm)

        self._freeze_stages()
        # every load path (init_cfg, load_from, --resume, load_checkpoint,
        # load_state_dict) meets kernels stored for another pretrain_size
        self._register_load_state_dict_pre_hook(self.resize_stored_kernels)

    # -- construction helpers ------------------------------------------------

    @classmethod
    def _parse_arch(cls, arch) -> Tuple[List[int], List[int]]:
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_settings:
                raise ValueError(
                    f'unknown ParCNetV2 arch {arch!r}; expected one of '
                    f'{sorted(cls.arch_settings)} or a dict with depths and '
                    f'dims')
            arch = cls.arch_settings[name]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        missing = {'depths', 'dims'} - set(arch)
        if missing:
            raise ValueError(f'a custom arch needs the keys depths and dims; '
                             f'missing {sorted(missing)}')
        depths, dims = list(arch['depths']), list(arch['dims'])
        if len(depths) != len(dims):
            raise ValueError(f'arch depths and dims must have the same length'
                             f', got depths={depths} and dims={dims}')
        if not depths:
            raise ValueError('arch needs at least one stage')
        if any(not isinstance(d, int) or d < 1 for d in depths):
            raise ValueError(f'arch depths must be positive integers, got '
                             f'{depths}')
        if any(not isinstance(d, int) or d < 2 or d % 2 for d in dims):
            # the channel gate unit splits 5C into two halves of 2.5C
            raise ValueError(f'arch dims must be positive even integers, got '
                             f'{dims}')
        return depths, dims

    @staticmethod
    def _parse_out_indices(out_indices, num_stages) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise TypeError(f'out_indices must be an int or a non-empty '
                            f'sequence of ints, got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not -num_stages <= index < num_stages:
                raise ValueError(f'out_indices {list(out_indices)} out of '
                                 f'range for {num_stages} stages')
            parsed.append(index % num_stages)
        return tuple(parsed)

    # -- weights --------------------------------------------------------------

    def init_weights(self):
        """Initialise, then load a ``Pretrained`` checkpoint if one is given.

        The checkpoint is read safely (no code runs), its layout (published
        classification, reference dense prediction or OpenMMLab) is detected,
        kernels stored at another length are resized, and missing or
        unexpected keys are logged by name.
        """
        from ...checkpoint.loading import load_pretrained
        cfgs = self.init_cfg or []
        cfgs = [cfgs] if isinstance(cfgs, dict) else list(cfgs)
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if others:
            self.init_cfg = others
            super().init_weights()
            self.init_cfg = cfgs
        for cfg in pretrained:
            load_pretrained(
                self,
                cfg['checkpoint'],
                prefix=cfg.get('prefix'),
                map_location=cfg.get('map_location', 'cpu'))
        if pretrained:
            print_log(
                f'oversized kernels stored at {list(self.kernel_lengths)} '
                f'taps (pretrain_size={self.pretrain_size}), ' +
                ('resized by linear interpolation to 2H-1 x 2W-1 taps for '
                 'every input' if self.kernel_mode == 'interpolate' else
                 'applied as stored (kernel_mode=fixed)'),
                logger='current')
        self._is_init = True

    def resize_stored_kernels(self,
                              state_dict: Dict[str, Tensor],
                              prefix: str = '',
                              *args) -> None:
        """Resize oversized kernels stored at another length (another
        ``pretrain_size``) to this model's, by linear interpolation as
        :func:`~..layers.oversized_conv.resize_kernel` resizes them for an
        input, in place in ``state_dict``, and log what was resized.

        It runs as a load-state-dict pre-hook, so every way of loading
        weights (``init_cfg``, ``load_from``, ``--resume``, mmengine's
        ``load_checkpoint``, ``load_state_dict``) resizes alike; ``prefix``
        is this backbone's in the state dict (``'backbone.'`` in a
        detector). Other shape mismatches are left for the loader to
        report."""
        resized: Dict[Tuple[int, int], int] = {}
        for name, param in self.named_parameters():
            vertical = name.endswith('dwconv1.conv_h.weight')
            if not (vertical or name.endswith('dwconv1.conv_w.weight')):
                continue
            key = prefix + name
            value = state_dict.get(key)
            if not isinstance(value, Tensor) or value.shape == param.shape:
                continue
            axis = 2 if vertical else 3
            if (value.dim() != 4 or value.shape[:2] != param.shape[:2]
                    or value.shape[5 - axis] != 1):
                continue
            state_dict[key] = resize_kernel(value, param.shape[axis], vertical)
            pair = (value.shape[axis], param.shape[axis])
            resized[pair] = resized.get(pair, 0) + 1
        for (old, new), count in sorted(resized.items()):
            print_log(
                f'resized {count} oversized kernels from {old} to {new} taps '
                f'by linear interpolation (stored for another pretrain_size;'
                f' this model stores {self.kernel_lengths})',
                logger='current')

    # -- forward --------------------------------------------------------------

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'ParCNetV2 expects input of shape (N, {self.in_channels}, H,'
                f' W) (in_channels={self.in_channels}), got '
                f'{tuple(x.shape)}')
        if x.shape[2] < 3 or x.shape[3] < 3:
            # the 7x7 stride-4 stem with padding 2 has no output below 3x3
            raise ValueError(
                f'ParCNetV2 needs inputs of at least 3x3 pixels, got '
                f'{x.shape[2]}x{x.shape[3]}')
        outs = []
        for i in range(self.num_stages):
            x = self.downsample_layers[i](x)
            stage = self.stages[i]
            if self.with_cp and x.requires_grad:
                for block in stage:
                    x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                # exporting: the blocks share the sizes' nodes
                with shared_sizes(
                        batch=x.shape[0], height=x.shape[1], width=x.shape[2]):
                    x = stage(x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean(dim=(1, 2))))
                else:
                    # contiguous NCHW, as every OpenMMLab backbone returns:
                    # a permuted view keeps channels-last strides, convs
                    # pass them on, and mmcv's RoIAlign (CPU and CUDA)
                    # reads its input as contiguous NCHW memory, so the
                    # RoI heads would see scrambled features
                    outs.append(norm(x).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    # -- training helpers ----------------------------------------------------

    def _frozen_modules(self):
        for i in range(self.frozen_stages):
            yield self.downsample_layers[i]
            yield self.stages[i]
            if i in self.out_indices:
                yield getattr(self, f'norm{i}')

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self,
                        param_name: str,
                        prefix: str = '',
                        blocks_per_layer: int = 3):
        """Layer id of a parameter, for layer-wise learning-rate decay.

        As in the reference fine-tuning code, blocks count in groups of
        ``blocks_per_layer``, numbered on from stage to stage: the stem is
        layer 0, block j of stage i is layer
        ``sum(depths[:i]) // g + 1 + j // g`` and a later stage's
        downsampling layer shares the id of that stage's first block.
        Everything else gets the largest id, the one left undecayed: the
        parameters outside the backbone (neck, heads) and the output norms,
        as in the reference code and MMPretrain's ConvNeXt (a dense
        backbone's output norms are new layers, which no classifier
        checkpoint holds). For ParCNetV2-T that is 9 ids (the reference
        configs' ``num_layers=7`` plus 2), for -S and -B 15.

        Args:
            param_name (str): name of the parameter.
            prefix (str): prefix of backbone parameters in ``param_name``.
                Defaults to ''.
            blocks_per_layer (int): blocks that share one id. Defaults to 3.

        Returns:
            Tuple[int, int]: the layer id and the number of layer ids.
        """
        group = blocks_per_layer

        def block_id(stage: int, block: int) -> int:
            return sum(self.depths[:stage]) // group + 1 + block // group

        last_id = block_id(self.num_stages - 1, self.depths[-1] - 1)
        num_layers = last_id + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'downsample_layers':
            stage = int(parts[1])
            layer_id = 0 if stage == 0 else block_id(stage, 0)
        elif parts[0] == 'stages':
            layer_id = block_id(int(parts[1]), int(parts[2]))
        else:  # output norms
            layer_id = num_layers - 1
        return layer_id, num_layers

    def get_stage_depth(self, param_name: str, prefix: str = ''):
        """Stage id of a parameter, for stage-wise learning-rate decay.

        As in the reference segmentation code, downsampling layers are stage
        0 and the blocks of stage i are i + 1; everything else, the output
        norms (see :meth:`get_layer_depth`) as well as anything outside the
        backbone, gets the last id, the one left undecayed.

        Args:
            param_name (str): name of the parameter.
            prefix (str): prefix of backbone parameters in ``param_name``.
                Defaults to ''.

        Returns:
            Tuple[int, int]: the stage id and the number of stage ids.
        """
        num_ids = self.num_stages + 2
        if not param_name.startswith(prefix):
            return num_ids - 1, num_ids
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'downsample_layers':
            return 0, num_ids
        if parts[0] == 'stages':
            return int(parts[1]) + 1, num_ids
        return num_ids - 1, num_ids  # output norms
