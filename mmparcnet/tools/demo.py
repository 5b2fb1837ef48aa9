"""``mmparcnet-demo``: the paper's pipeline in miniature, on generated data.

ParCNetV2 is pretrained as an ImageNet classifier at 224 pixels and then
fine-tuned as the backbone of detectors and segmentors at other input sizes,
its oversized kernels resized to each one. This runs the same with the real
tools, on the CPU, in a few minutes:

1. prints every ParCNetV2 arch: parameters and MACs at 224 beside the
   paper's, and the stage outputs at a detection size;
2. draws a toy ImageNet (one shape per image: square, disc or triangle) and a
   toy COCO set (several shapes, boxes and polygon masks), held-out
   validation images included;
3. pretrains a small ParCNetV2 classifier at 64x64 with ``mim train
   mmpretrain`` and evaluates it with ``mim test mmpretrain``;
4. fine-tunes a Mask R-CNN from that checkpoint (``init_cfg=dict(type=
   'Pretrained', ...)``: the oversized kernels stored at the 64-pixel
   lengths are resized to every detection input) with ``mim train mmdet``,
   and evaluates it with ``mim test mmdet`` (MMDetection's COCO evaluation),
   drawing its predictions beside the ground truth;
5. prints each result against its untrained value, and where the pictures
   and checkpoints are.
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

from ..analysis import REFERENCE_CLASSIFIERS
from ..resources import config_path
from ..toolbox_runs import METRIC, metrics, mim_command, toolbox_env

CLASSIFIER_CONFIG = 'classification/parcnetv2-nano_toy-shapes-64px.py'
DETECTOR_CONFIG = 'detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py'
DETECTION_TEST_SIZE = (160, 160)  # the detector config's test Resize
ECHOED = re.compile(r'Epoch\(train\)|oversized kernels|loaded \d+ tensors|'
                    r'^Traceback|Error:')


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
    for arch, (paper_params, paper_macs) in REFERENCE_CLASSIFIERS.items():
        classifier = ClassifierForCounting(arch)
        params = count_parameters(classifier) / 1e6
        macs = count_macs(classifier, (1, 3, 224, 224)) / 1e9
        dense = ParCNetV2(arch).eval()
        with torch.no_grad():
            feats = dense(torch.randn(1, 3, height, width))
        stages = ', '.join(f'{f.shape[1]}x{f.shape[2]}x{f.shape[3]} '
                           f'({2 * f.shape[2] - 1}x{2 * f.shape[3] - 1})'
                           for f in feats)
        print(f'{arch:5} {params:9.2f} {paper_params:6.2f} '
              f'{macs:7.2f} {paper_macs:6.2f}   {stages}')
    print()


def run(command, log_path):
    """Run a command, echo its salient lines and keep its output in
    ``log_path``; return the output."""
    print('$ ' + ' '.join(command), flush=True)
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=toolbox_env())
        for line in process.stdout:
            log.write(line)
            if METRIC.search(line) or ECHOED.search(line):
                print('  ' + line.rstrip()[:160], flush=True)
        if process.wait() != 0:
            raise SystemExit(f'command failed ({process.returncode}); its '
                             f'full output is in {log_path}')
    with open(log_path) as log:
        return log.read()


def save_initialised(config: str,
                     toolbox: str,
                     path: str,
                     options: dict = None) -> None:
    """Build the config's model, run its ``init_weights`` (which loads a
    ``Pretrained`` backbone if the config has one) and save it: the
    "untrained" model the toolboxes' test tools then evaluate."""
    import importlib
    import logging

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner import save_checkpoint

    import mmparcnet  # noqa: F401
    module = importlib.import_module(toolbox)
    importlib.import_module(f'{module.__name__}.utils').register_all_modules()
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options or {})
    torch.manual_seed(0)
    model = importlib.import_module(
        f'{module.__name__}.registry').MODELS.build(cfg.model)
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
        canvas.paste(image,
                     ((index % columns) * width, (index // columns) * height))
    canvas.save(out_path)
    return out_path


def kernel_taps(pretrain_size: int, input_size) -> str:
    """The stored oversized kernel lengths and the ones an input meets."""
    from mmparcnet.models.layers.geometry import (stage_map_sizes,
                                                  stored_kernel_lengths)
    stored = stored_kernel_lengths(pretrain_size)
    height, width = input_size
    rows = zip(stage_map_sizes(height), stage_map_sizes(width))
    used = ', '.join(f'{2 * h - 1}x{2 * w - 1}' for h, w in rows)
    return (f'oversized kernels: stored at {", ".join(map(str, stored))} '
            f'taps (classifier at {pretrain_size}x{pretrain_size}); at the '
            f'detection test size {height}x{width} each stage applies them '
            f'resized to {used}')


class Pipeline:
    """The demo's steps, sharing the work dir, data roots and ``mim``."""

    def __init__(self, args):
        self.args = args
        self.work_dir = args.work_dir
        self.mim = mim_command()
        self.results = {}

    def path(self, *parts):
        return osp.join(self.work_dir, *parts)

    def mim_run(self, verb, toolbox, config, name, *extra):
        return run(self.mim + [verb, toolbox, config] + list(extra),
                   self.path(name + '.log'))

    # -- data -----------------------------------------------------------------

    def make_data(self):
        from mmparcnet.datasets import make_coco, make_imagenet
        args = self.args
        imagenet = args.imagenet_root.rstrip('/')
        if not osp.isfile(osp.join(imagenet, 'meta', 'val.txt')):
            make_imagenet(
                imagenet, args.per_class_train, args.per_class_val, seed=1)
        coco = args.coco_root.rstrip('/') + '/'
        if not osp.isfile(
                osp.join(coco, 'annotations', 'instances_val2017.json')):
            make_coco(coco, args.num_train, args.num_val)
        print(f'toy ImageNet in {imagenet}/: {3 * args.per_class_train} '
              f'train, {3 * args.per_class_val} val images; toy COCO in '
              f'{coco}: {args.num_train} train, {args.num_val} val images\n')
        self.imagenet_options = [
            f'train_dataloader.dataset.data_root={imagenet}',
            f'val_dataloader.dataset.data_root={imagenet}',
            f'test_dataloader.dataset.data_root={imagenet}',
        ]
        ann = f'{coco}annotations/instances_val2017.json'
        self.coco_options = [
            f'train_dataloader.dataset.data_root={coco}',
            f'val_dataloader.dataset.data_root={coco}',
            f'test_dataloader.dataset.data_root={coco}',
            f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}'
        ]

    # -- classifier -----------------------------------------------------------

    def pretrain_classifier(self) -> str:
        print('== pretraining the backbone as a classifier '
              '(mim train mmpretrain)')
        config = config_path(CLASSIFIER_CONFIG)
        epochs = self.args.classifier_epochs
        work_dir = self.path('classifier')
        untrained = self.path('classifier_untrained.pth')
        save_initialised(config, 'mmpretrain', untrained)
        before = metrics(
            self.mim_run('test', 'mmpretrain', config,
                         'classifier_test_untrained', '--checkpoint',
                         untrained, '--work-dir',
                         self.path('classifier_test_untrained'),
                         '--cfg-options', *self.imagenet_options))
        self.mim_run('train', 'mmpretrain', config, 'classifier_train',
                     '--work-dir', work_dir, '--cfg-options',
                     f'train_cfg.max_epochs={epochs}',
                     f'train_cfg.val_interval={epochs}',
                     f'default_hooks.checkpoint.interval={epochs}',
                     f'param_scheduler.1.end={epochs}', *self.imagenet_options)
        checkpoint = osp.join(work_dir, f'epoch_{epochs}.pth')
        after = metrics(
            self.mim_run('test', 'mmpretrain', config, 'classifier_test',
                         '--checkpoint', checkpoint, '--work-dir',
                         self.path('classifier_test'), '--cfg-options',
                         *self.imagenet_options))
        self.results['classifier top-1 (toy ImageNet val)'] = (
            before.get('top1'), after.get('top1'))
        self.checkpoints = [checkpoint]
        print()
        return checkpoint

    # -- detector -------------------------------------------------------------

    def fine_tune_detector(self, classifier: str) -> str:
        print('== fine-tuning a Mask R-CNN from the classifier '
              '(mim train mmdet)')
        config = config_path(DETECTOR_CONFIG)
        from mmengine.config import Config
        pretrain_size = Config.fromfile(config).model.backbone.pretrain_size
        print(kernel_taps(pretrain_size, DETECTION_TEST_SIZE))
        init = [
            'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={classifier}',
            'model.backbone.init_cfg.prefix=backbone.'
        ]
        epochs = self.args.detector_epochs
        untrained = self.path('detector_untrained.pth')
        save_initialised(
            config, 'mmdet', untrained, {
                'model.backbone.init_cfg':
                dict(
                    type='Pretrained',
                    checkpoint=classifier,
                    prefix='backbone.')
            })
        before = metrics(
            self.mim_run('test', 'mmdet', config, 'detector_test_untrained',
                         '--checkpoint', untrained, '--work-dir',
                         self.path('detector_test_untrained'), '--cfg-options',
                         *self.coco_options))
        self.mim_run('train', 'mmdet', config, 'detector_train', '--work-dir',
                     self.path('detector'), '--cfg-options',
                     f'train_cfg.max_epochs={epochs}',
                     f'train_cfg.val_interval={epochs}',
                     f'default_hooks.checkpoint.interval={epochs}', *init,
                     *self.coco_options)
        checkpoint = self.path('detector', f'epoch_{epochs}.pth')
        show_dir = 'predictions'
        after = metrics(
            self.mim_run('test', 'mmdet', config, 'detector_test',
                         '--checkpoint', checkpoint, '--work-dir',
                         self.path('detector_test'), '--show-dir', show_dir,
                         '--cfg-options',
                         'default_hooks.visualization.score_thr=0.3',
                         *self.coco_options))
        for key, name in (('bbox_mAP', 'detector bbox mAP (toy COCO val)'),
                          ('bbox_mAP_50', 'detector bbox AP50'),
                          ('segm_mAP', 'detector segm mAP')):
            self.results[name] = (before.get(key), after.get(key))
        shown = newest_run_folder(self.path('detector_test'), show_dir)
        self.pictures = [
            tile_pictures(shown, self.path('detector_predictions.png'))
        ] if shown else []
        self.checkpoints.append(checkpoint)
        print()
        return checkpoint

    # -- summary --------------------------------------------------------------

    def summary(self, start: float) -> int:
        print('== results on the held-out toy validation sets (the '
              "toolboxes' own evaluation)")
        print(f'{"":36} {"before":>8} {"after":>8}')

        def cell(value, width):
            return f'{value:{width}.3f}' if value is not None else \
                f'{"n/a":>{width}}'

        for name, (before, after) in self.results.items():
            print(f'{name:36} {cell(before, 8)} {cell(after, 8)}')
        print('(before training: the classifier as initialised; the '
              "detector with the classifier's backbone and new heads)")
        print('\ncheckpoints: ' + ', '.join(self.checkpoints))
        for picture in self.pictures:
            print(f'predictions beside ground truth: {picture}')
        print(f'done in {(time.time() - start) / 60:.1f} minutes')
        failed = [
            name for name, (before, after) in self.results.items()
            if after is None or before is None or after <= before
        ]
        if failed:
            print('did not learn: ' + ', '.join(failed), file=sys.stderr)
            return 1
        return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--imagenet-root', default='data/toy_imagenet')
    parser.add_argument('--coco-root', default='data/toy_coco')
    parser.add_argument('--per-class-train', type=int, default=160)
    parser.add_argument('--per-class-val', type=int, default=40)
    parser.add_argument('--num-train', type=int, default=96)
    parser.add_argument('--num-val', type=int, default=24)
    parser.add_argument('--classifier-epochs', type=int, default=12)
    parser.add_argument('--detector-epochs', type=int, default=16)
    parser.add_argument(
        '--skip-archs',
        action='store_true',
        help='do not print the arch table')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    if not args.skip_archs:
        print_archs()
    os.makedirs(args.work_dir, exist_ok=True)
    pipeline = Pipeline(args)
    pipeline.make_data()
    classifier = pipeline.pretrain_classifier()
    pipeline.fine_tune_detector(classifier)
    return pipeline.summary(start)


if __name__ == '__main__':
    sys.exit(main())
