"""ParCNetV2: Oversized Kernel with Enhanced Attention (ICCV 2023).

A pure-CNN backbone whose blocks mix tokens with a spatial bifurcate gate unit
(an oversized depthwise convolution about twice the feature map, plus a 7x7
depthwise convolution, gated by a pointwise branch) and mix channels with a
channel bifurcate gate unit. The layers are in :mod:`..layers`, how they are
computed in :mod:`..ops`; this file holds the backbone: the arch table, the
stages, loading, freezing and the layer ids for learning-rate decay.
Parameter names follow the published checkpoints, so they load as they are
(see ``mmparcnet.checkpoint``).

Only PyTorch and mmengine are needed here; ``mmparcnet.registry`` makes the
class known to MMDetection, MMSegmentation and MMPretrain.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ..compiling import compile_blocks as _compile_blocks
from ..layers import (ChannelNorm, Downsample, ParCNetV2Block, Stage, Stem,
                      stored_kernel_lengths)
from ..layers.geometry import min_input_size
from ..ops.oversized import resize_kernel

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
            :func:`~mmparcnet.models.ops.registry.choose_impl`). All give
            the same numbers up to rounding. Defaults to ``'auto'``.
        fast_paths (bool, optional): whether the layers may take their fast
            implementations (:mod:`mmparcnet.models.ops`); False: the plain
            computation everywhere (the reference the fast paths are tested
            against); None: the process-wide switch
            (``MMPARCNET_FAST_PATHS``) when the model is built. Defaults to
            None.
        compile_blocks (bool | dict): compile each block in place with
            ``torch.compile`` (regional compilation,
            :func:`~mmparcnet.models.compile_blocks`): the blocks of a stage
            share their graphs, which compile in seconds and serve every
            input size of a multi-scale schedule; a dict holds
            ``torch.compile``'s arguments (``dynamic`` defaults to True).
            Needs PyTorch >= 2.5. Parameter names and checkpoints stay as
            they are; a copy (``copy.deepcopy``, a pickle) runs eager.
            Defaults to False.
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
                 fast_paths: Optional[bool] = None,
                 compile_blocks: Union[bool, Dict] = False,
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
        if not isinstance(compile_blocks, (bool, dict)):
            raise TypeError('compile_blocks must be a bool or a dict of '
                            'torch.compile arguments, got '
                            f'{type(compile_blocks).__name__}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        # kernel_mode and oversized_conv_impl are checked by OversizedConv
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
            self.downsample_layers.append(
                Stem(in_channels, dim) if i ==
                0 else Downsample(self.dims[i - 1], dim, fast_paths))
            first = sum(self.depths[:i])
            self.stages.append(
                Stage(
                    *[
                        ParCNetV2Block(
                            dim,
                            self.kernel_lengths[i],
                            kernel_mode,
                            oversized_conv_impl,
                            drop_path_rate=rates[first + j],
                            res_scale=i in self.res_scale_stages,
                            fast_paths=fast_paths) for j in range(depth)
                    ],
                    with_cp=with_cp,
                    fast_paths=fast_paths))

        for i in self.out_indices:
            norm = (
                nn.LayerNorm(self.dims[i], eps=1e-6)
                if gap_before_final_norm else ChannelNorm(self.dims[i]))
            self.add_module(f'norm{i}', norm)

        self._freeze_stages()
        if compile_blocks is not False:  # True, or a dict (even empty)
            options = {} if compile_blocks is True else dict(compile_blocks)
            count = _compile_blocks(self, **options)
            print_log(
                f'ParCNetV2: {count} blocks compiled one by one '
                f'(torch.compile, {options or "defaults"})',
                logger='current')
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
        :func:`~..ops.oversized.resize_kernel` resizes them for an
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
        smallest = min_input_size()
        if x.shape[2] < smallest or x.shape[3] < smallest:
            # the stem leaves no map below that size
            raise ValueError(
                f'ParCNetV2 needs inputs of at least {smallest}x{smallest} '
                f'pixels, got {x.shape[2]}x{x.shape[3]}')
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](self.downsample_layers[i](x))
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

    def set_fast_paths(self, enabled: Optional[bool] = None) -> None:
        """Choose again how every layer is computed: False, the plain
        computation everywhere; True, the fast implementations where they
        apply; None, the process-wide switch."""
        for module in self.modules():
            if module is not self and hasattr(module, 'set_fast_paths'):
                module.set_fast_paths(enabled)

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
