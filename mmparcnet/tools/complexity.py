"""``mmparcnet-complexity``: parameters and MACs beside the paper's numbers.

- every arch as the published classifier at 224x224 (paper Table 1, as
  counted on the reference implementation);
- each detection config at 1280x800 and each UperNet config at 2048x512 (the
  toolboxes' conventions; paper Table 5 gives UperNet-T 55M / 932G and
  UperNet-S 69M / 1005G).

MACs are counted by mmengine's FlopAnalyzer on the direct oversized
convolution, so each oversized kernel counts with the length it really has
at that input: in ``interpolate`` mode 2H-1 and 2W-1 taps of the map it
meets, in ``fixed`` mode the stored length. ``--kernel-mode`` picks the mode
(default: both, which shows what interpolation costs at large inputs).
"""
import argparse
import glob
import os.path as osp
import sys
from typing import List, Optional

import torch

from mmparcnet.analysis import (PAPER_UPERNET, REFERENCE_CLASSIFIERS,
                                ClassifierForCounting, count_macs,
                                count_parameters)
from mmparcnet.resources import configs_root


def classifier_rows(modes: List[str]) -> List[dict]:
    rows = []
    for arch, (paper_params, paper_macs) in REFERENCE_CLASSIFIERS.items():
        for mode in modes:
            model = ClassifierForCounting(arch, kernel_mode=mode)
            rows.append(
                dict(
                    model=f'classifier {arch}',
                    input='224x224',
                    mode=mode,
                    params_m=count_parameters(model) / 1e6,
                    macs_g=count_macs(model, (1, 3, 224, 224)) / 1e9,
                    paper_params_m=paper_params,
                    paper_macs_g=paper_macs))
    return rows


class _TensorForward(torch.nn.Module):
    """A detector or segmentor's tensor-mode forward on one input."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


class _ClassifierForward(torch.nn.Module):
    """An MMPretrain classifier's tensor-mode forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, mode='tensor')


def classification_row(path: str) -> dict:
    """A classification config as MMPretrain builds it, at its pretraining
    size (224 for the ImageNet configs)."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.oversized_conv_impl = 'direct'
    size = cfg.model.backbone.get('pretrain_size', 224)
    model = MODELS.build(cfg.model).eval()
    arch = cfg.model.backbone.arch
    paper = REFERENCE_CLASSIFIERS.get(arch) if isinstance(arch, str) else None
    return dict(
        model=osp.basename(path)[:-3],
        input=f'{size}x{size}',
        mode='-',
        params_m=count_parameters(model) / 1e6,
        macs_g=count_macs(_ClassifierForward(model), (1, 3, size, size)) / 1e9,
        paper_params_m=paper[0] if paper else None,
        paper_macs_g=paper[1] if paper else None)


def config_row(path: str, mode: str = 'interpolate') -> dict:
    """Parameters and MACs of any config of this repository: detectors at
    1280x800, UperNet at 2048x512, classifiers at their pretraining size
    (where both kernel modes are the same computation)."""
    if osp.basename(osp.dirname(path)) == 'classification':
        return classification_row(path)
    return dense_row(path, mode)


def dense_row(path: str, mode: str) -> dict:
    import importlib

    from mmengine.config import Config
    family = osp.basename(osp.dirname(path))
    toolbox = 'mmdet' if family == 'detection' else 'mmseg'
    importlib.import_module(f'{toolbox}.utils').register_all_modules(
        init_default_scope=True)
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.kernel_mode = mode
    cfg.model.backbone.oversized_conv_impl = 'direct'
    if family == 'detection':
        from mmdet.structures import DetDataSample
        height, width = 800, 1280
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                batch_input_shape=(height, width),
                scale_factor=(1., 1.)))
    else:
        from mmseg.structures import SegDataSample
        height, width = 512, 2048
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                batch_input_shape=(height, width)))
        cfg.model.pop('pretrained', None)
    model = registry.build(cfg.model).eval()
    arch = cfg.model.backbone.arch
    paper = PAPER_UPERNET.get(arch) if family == 'segmentation' else None
    wrapped = _TensorForward(model, [sample])
    with torch.no_grad():
        macs = count_macs(wrapped, (1, 3, height, width)) / 1e9
    return dict(
        model=osp.basename(path)[:-3],
        input=f'{width}x{height}',
        mode=mode,
        params_m=count_parameters(model) / 1e6,
        macs_g=macs,
        paper_params_m=paper[0] if paper else None,
        paper_macs_g=paper[1] if paper else None)


def _diff(value: float, paper: Optional[float]) -> str:
    if paper is None:
        return '-'
    return f'{(value / paper - 1) * 100:+.1f}%'


def print_rows(rows: List[dict]) -> None:
    width = max(len(r['model']) for r in rows)
    print(f'{"model":{width}} {"input":>9} {"mode":>11} {"params M":>9} '
          f'{"paper":>6} {"diff":>7} {"MACs G":>8} {"paper":>7} {"diff":>7}')
    for r in rows:
        paper_params = r['paper_params_m']
        paper_macs = r['paper_macs_g']
        print(f'{r["model"]:{width}} {r["input"]:>9} {r["mode"]:>11} '
              f'{r["params_m"]:9.2f} '
              f'{"-" if paper_params is None else f"{paper_params:.1f}":>6} '
              f'{_diff(r["params_m"], paper_params):>7} '
              f'{r["macs_g"]:8.1f} '
              f'{"-" if paper_macs is None else f"{paper_macs:.1f}":>7} '
              f'{_diff(r["macs_g"], paper_macs):>7}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-complexity', description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--kernel-mode',
        nargs='+',
        default=['interpolate', 'fixed'],
        choices=['interpolate', 'fixed'])
    parser.add_argument(
        '--configs',
        nargs='*',
        default=None,
        help='configs to count, any family (default: every '
        'detection and segmentation config in configs/)')
    parser.add_argument('--skip-classifiers', action='store_true')
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmparcnet  # noqa: F401
    rows = [] if args.skip_classifiers else classifier_rows(args.kernel_mode)
    configs = args.configs
    if configs is None:
        root = configs_root()
        configs = sorted(
            glob.glob(osp.join(root, 'detection', '*parcnetv2-[tsb]_*.py')) +
            glob.glob(osp.join(root, 'segmentation', '*.py')))
    for path in configs:
        for mode in args.kernel_mode:
            rows.append(config_row(path, mode))
            print(
                f'  counted {osp.basename(path)} ({mode})',
                file=sys.stderr,
                flush=True)
    print_rows(rows)
    if args.json:
        import json
        with open(args.json, 'w') as handle:
            json.dump(
                dict(torch=torch.__version__, rows=rows), handle, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
