"""``mmparcnet-demo``: the main job on an embedded default.

1. Prints every ParCNetV2 arch: parameters and MACs at 224 beside the
   published numbers, and the stage outputs on a detection-like input.
2. Draws a toy COCO set (``data/toy_coco/``: squares, discs, triangles, boxes
   and polygon masks, images of several sizes).
3. Trains the small ParCNetV2 Mask R-CNN of
   ``configs/detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py`` on it with
   ``mim train mmdet``, from scratch.
4. Evaluates the untrained and the trained detector with ``mim test mmdet``
   (MMDetection's own COCO evaluation) and prints both.
5. Saves the predictions on a few validation images, drawn by MMDetection's
   visualizer (``--show-dir``), as one picture.

Run it from the repository root (``make demo`` does).
"""
import argparse
import glob
import os
import os.path as osp
import re
import subprocess
import sys
import time

import torch

PUBLISHED = {  # PARCNETV2_SPEC.md, paper Table 1
    'xt': (7.43, 1.55),
    'tiny': (24.94, 4.27),
    'small': (39.44, 7.78),
    'base': (56.37, 12.49),
}
TOY_CONFIG = 'configs/detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py'
METRIC = re.compile(r'coco/(bbox|segm)_mAP(_50)?: (-?[0-9.]+)')


def print_archs(dense_size=(800, 1216)) -> None:
    import mmparcnet
    from mmparcnet.analysis import (ClassifierForCounting, count_macs,
                                    count_parameters)
    from mmparcnet.models import ParCNetV2
    print(f'mmparcnet {mmparcnet.__version__}, torch {torch.__version__}; '
          f'ParCNetV2 registered in mmengine and '
          f'{", ".join(mmparcnet.REGISTERED_IN) or "no toolbox"}\n')
    height, width = dense_size
    header = (f'{"arch":5} {"params M":>9} {"paper":>6} {"MACs G":>7} '
              f'{"paper":>6}   stage outputs at {height}x{width} '
              f'(C x H x W; oversized kernel taps 2H-1 x 2W-1)')
    print(header)
    print('-' * len(header))
    for arch in PUBLISHED:
        classifier = ClassifierForCounting(arch)
        params = count_parameters(classifier) / 1e6
        macs = count_macs(classifier, (1, 3, 224, 224)) / 1e9
        dense = ParCNetV2(arch).eval()
        with torch.no_grad():
            feats = dense(torch.randn(1, 3, height, width))
        stages = ', '.join(
            f'{f.shape[1]}x{f.shape[2]}x{f.shape[3]} '
            f'({2 * f.shape[2] - 1}x{2 * f.shape[3] - 1})' for f in feats)
        print(f'{arch:5} {params:9.2f} {PUBLISHED[arch][0]:6.2f} '
              f'{macs:7.2f} {PUBLISHED[arch][1]:6.2f}   {stages}')
    print()


def run(command, log_path):
    """Run a command, echo its output and keep it in ``log_path``."""
    print('$ ' + ' '.join(command), flush=True)
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        for line in process.stdout:
            log.write(line)
            if METRIC.search(line) or 'Epoch(train)' in line or \
                    line.startswith('Traceback') or 'Error:' in line:
                print('  ' + line.rstrip()[:160], flush=True)
        if process.wait() != 0:
            raise SystemExit(f'command failed ({process.returncode}); its '
                             f'full output is in {log_path}')
    with open(log_path) as log:
        return log.read()


def metrics(output: str) -> dict:
    found = {}
    for kind, suffix, value in METRIC.findall(output):
        found[f'{kind}_mAP{suffix}'] = float(value)
    return found


def save_untrained(config: str, path: str) -> None:
    import logging

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner import save_checkpoint

    import mmparcnet  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # not the per-parameter init report
    model.init_weights()
    logger.setLevel(level)
    save_checkpoint(model.state_dict(), path)


def newest_run_folder(work_dir: str, name: str) -> str:
    """``work_dir/<timestamp>/name`` of the newest run that has one (every
    ``mim test`` run writes into a folder named by its start time, and the
    demo's work_dir is reused), or '' if none has."""
    found = sorted(glob.glob(osp.join(work_dir, '[0-9]*_[0-9]*', name)))
    return found[-1] if found else ''


def tile_pictures(folder: str, out_path: str, count: int = 6) -> str:
    from PIL import Image
    files = sorted(glob.glob(osp.join(folder, '**', '*.jpg'), recursive=True))
    files = files[:count]
    if not files:
        return ''
    images = [Image.open(f).convert('RGB') for f in files]
    # cells as large as the largest picture in each direction (each picture
    # is ground truth | prediction, about twice as wide as high), 4 pixels
    # apart
    gap = 4
    width = max(i.size[0] for i in images) + gap
    height = max(i.size[1] for i in images) + gap
    columns = min(2, len(images))
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new('RGB', (columns * width - gap, rows * height - gap),
                       (255, 255, 255))
    for index, image in enumerate(images):
        canvas.paste(image, ((index % columns) * width,
                             (index // columns) * height))
    canvas.save(out_path)
    return out_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='mmparcnet-demo',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/toy_coco')
    parser.add_argument('--epochs', type=int, default=16)
    parser.add_argument('--num-train', type=int, default=96)
    parser.add_argument('--num-val', type=int, default=24)
    parser.add_argument('--skip-archs', action='store_true',
                        help='do not print the arch table')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(TOY_CONFIG):
        raise SystemExit(f'run mmparcnet-demo from the repository root '
                         f'({TOY_CONFIG} not found)')
    start = time.time()
    if not args.skip_archs:
        print_archs()
    from mmparcnet.datasets import make_coco
    data_root = args.data_root.rstrip('/') + '/'
    if not osp.isfile(osp.join(data_root, 'annotations',
                               'instances_val2017.json')):
        make_coco(data_root, args.num_train, args.num_val)
    print(f'toy COCO set in {data_root}: {args.num_train} train and '
          f'{args.num_val} val images\n')
    os.makedirs(args.work_dir, exist_ok=True)
    data_options = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'val_evaluator.ann_file={data_root}'
        'annotations/instances_val2017.json',
        f'test_evaluator.ann_file={data_root}'
        'annotations/instances_val2017.json',
    ]
    mim = [osp.join(osp.dirname(sys.executable), 'mim')]
    if not osp.isfile(mim[0]):
        mim = ['mim']

    untrained = osp.join(args.work_dir, 'untrained.pth')
    save_untrained(TOY_CONFIG, untrained)
    before = metrics(run(mim + [
        'test', 'mmdet', TOY_CONFIG, '--checkpoint', untrained, '--work-dir',
        osp.join(args.work_dir, 'test_untrained'), '--cfg-options'
    ] + data_options, osp.join(args.work_dir, 'test_untrained.log')))

    run(mim + [
        'train', 'mmdet', TOY_CONFIG, '--work-dir', args.work_dir,
        '--cfg-options', f'train_cfg.max_epochs={args.epochs}',
        f'train_cfg.val_interval={args.epochs}',
        f'default_hooks.checkpoint.interval={args.epochs}'
    ] + data_options, osp.join(args.work_dir, 'train.log'))
    checkpoint = osp.join(args.work_dir, f'epoch_{args.epochs}.pth')

    show_dir = 'predictions'
    after = metrics(run(mim + [
        'test', 'mmdet', TOY_CONFIG, '--checkpoint', checkpoint,
        '--work-dir', osp.join(args.work_dir, 'test_trained'), '--show-dir',
        show_dir, '--cfg-options', 'default_hooks.visualization.score_thr=0.12'
    ] + data_options, osp.join(args.work_dir, 'test_trained.log')))
    shown = newest_run_folder(osp.join(args.work_dir, 'test_trained'),
                              show_dir)
    picture = tile_pictures(shown, osp.join(
        args.work_dir, 'predictions.png')) if shown else ''

    print('\nCOCO metrics on the toy validation set (MMDetection evaluation)')
    print(f'{"":10} {"bbox mAP":>9} {"bbox AP50":>10} {"segm mAP":>9}')
    for name, values in (('untrained', before), ('trained', after)):
        print(f'{name:10} {values.get("bbox_mAP", float("nan")):9.3f} '
              f'{values.get("bbox_mAP_50", float("nan")):10.3f} '
              f'{values.get("segm_mAP", float("nan")):9.3f}')
    print(f'\ncheckpoint: {checkpoint}')
    if picture:
        print(f'predictions: {picture}')
    print(f'done in {(time.time() - start) / 60:.1f} minutes')
    if after.get('bbox_mAP', 0.) <= before.get('bbox_mAP', 0.):
        print('the detector did not learn: trained mAP is not above the '
              'untrained one', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
