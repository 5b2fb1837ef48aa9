"""``mmparcnet-demo``: the main job on an embedded default.

Builds every ParCNetV2 arch, counts its parameters and MACs at 224 beside the
published numbers, runs the classifier at 224 and the dense backbone on a
non-square detection-like input in ``interpolate`` mode, and prints what
each stage returned and which kernel length it really used.
"""
import argparse
import time

import torch

PUBLISHED = {  # PARCNETV2_SPEC.md, paper Table 1
    'xt': (7.43, 1.55),
    'tiny': (24.94, 4.27),
    'small': (39.44, 7.78),
    'base': (56.37, 12.49),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='mmparcnet-demo',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--archs', nargs='+', default=list(PUBLISHED),
                        choices=list(PUBLISHED))
    parser.add_argument('--dense-size', nargs=2, type=int, default=[320, 480],
                        metavar=('H', 'W'),
                        help='input size of the dense forward pass')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmparcnet
    from mmparcnet.analysis import (ClassifierForCounting, count_macs,
                                    count_parameters)
    from mmparcnet.models import ParCNetV2
    torch.manual_seed(0)
    print(f'mmparcnet {mmparcnet.__version__}, torch {torch.__version__}; '
          f'ParCNetV2 registered in: mmengine, '
          f'{", ".join(mmparcnet.REGISTERED_IN) or "(no toolbox installed)"}')
    header = (f'{"arch":6} {"params (M)":>11} {"paper":>7} {"MACs (G)":>9} '
              f'{"paper":>7} {"logits":>10} {"cls ms":>7}  dense outputs '
              f'at {args.dense_size[0]}x{args.dense_size[1]} (C x H x W, '
              f'kernel taps used)')
    print(header)
    print('-' * len(header))
    height, width = args.dense_size
    for arch in args.archs:
        classifier = ClassifierForCounting(arch).eval()
        params = count_parameters(classifier) / 1e6
        macs = count_macs(classifier, (1, 3, 224, 224)) / 1e9
        start = time.perf_counter()
        with torch.no_grad():
            logits = classifier(torch.randn(1, 3, 224, 224))
        cls_ms = (time.perf_counter() - start) * 1e3
        dense = ParCNetV2(arch, kernel_mode='interpolate').eval()
        with torch.no_grad():
            feats = dense(torch.randn(1, 3, height, width))
        shapes = ', '.join(
            f'{f.shape[1]}x{f.shape[2]}x{f.shape[3]} '
            f'({2 * f.shape[2] - 1}/{2 * f.shape[3] - 1})' for f in feats)
        paper_params, paper_macs = PUBLISHED[arch]
        print(f'{arch:6} {params:11.2f} {paper_params:7.2f} {macs:9.2f} '
              f'{paper_macs:7.2f} {str(tuple(logits.shape)):>10} '
              f'{cls_ms:7.0f}  {shapes}')
    print('\nStored kernel lengths at 224: '
          f'{ParCNetV2("xt").kernel_lengths}; in interpolate mode each stage '
          'resizes them to 2H-1 / 2W-1 taps of the map it meets.')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
