"""``mmparcnet-infer``: draw a trained model's predictions on images.

A thin front to the toolboxes' own inferencers (MMDetection's
``DetInferencer``, MMSegmentation's ``MMSegInferencer``, MMPretrain's
``ImageClassificationInferencer``), picked by the config's ``default_scope``,
so boxes, masks, segmentation maps and class labels are drawn exactly as the
toolboxes draw them. Example::

    mmparcnet-infer \\
        configs/detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py \\
        work_dirs/demo/detector/epoch_16.pth \\
        data/toy_coco/val2017/000000.jpg \\
        --out-dir work_dirs/demo/infer
"""
import argparse
import glob
import os
import os.path as osp
import sys
from typing import List


def build_inferencer(config: str, checkpoint: str, device: str):
    from mmengine.config import Config

    import mmparcnet  # noqa: F401  (before the toolboxes read the config)
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(
            model=config,
            weights=checkpoint,
            device=device,
            show_progress=False)
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=config, weights=checkpoint, device=device)
    if scope == 'mmpretrain':
        from mmpretrain.apis import ImageClassificationInferencer
        return ImageClassificationInferencer(
            model=config, pretrained=checkpoint, device=device)
    raise SystemExit(f'config scope {scope!r} is not one of mmdet, mmseg, '
                     f'mmpretrain')


def infer(config: str,
          checkpoint: str,
          images: List[str],
          out_dir: str,
          device: str = 'cpu',
          score_thr: float = 0.3) -> List[str]:
    """Write one picture per image into ``out_dir``; returns their paths."""
    inferencer = build_inferencer(config, checkpoint, device)
    os.makedirs(out_dir, exist_ok=True)
    kwargs = dict(out_dir=out_dir)
    name = type(inferencer).__name__
    if name == 'DetInferencer':
        kwargs['pred_score_thr'] = score_thr
    elif name == 'ImageClassificationInferencer':
        kwargs = dict(show_dir=osp.join(out_dir, 'vis'))
    inferencer(images, **kwargs)
    written = sorted(
        glob.glob(osp.join(out_dir, '**', '*.jpg'), recursive=True) +
        glob.glob(osp.join(out_dir, '**', '*.png'), recursive=True))
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-infer', description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for image in args.images:
        if not osp.isfile(image):
            raise SystemExit(f'image not found: {image}')
    written = infer(args.config, args.checkpoint, args.images, args.out_dir,
                    args.device, args.score_thr)
    for path in written:
        print(f'wrote {path}')
    return 0 if written else 1


if __name__ == '__main__':
    sys.exit(main())
