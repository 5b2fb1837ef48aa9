"""The flows users run: ``mim train`` then ``mim test`` (the toolboxes' own
tools and evaluation) on every config family, on generated data."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from . import toy_configs

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')

MIM = osp.join(osp.dirname(sys.executable), 'mim')
HERE = osp.dirname(osp.abspath(__file__))  # flow_hooks.py, for the jobs


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('flows')
    toy_configs.make_toy_data(
        root, coco=(6, 4), ade20k=(4, 2), imagenet=(2, 1))
    return root


def mim(args, cwd):
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        PYTHONPATH=HERE + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run(
        [MIM] + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output


FLOWS = [
    ('mask_rcnn', 'mmdet', toy_configs.MASK_RCNN, r'coco/segm_mAP: '),
    ('cascade', 'mmdet', toy_configs.CASCADE, r'coco/segm_mAP: '),
    ('upernet', 'mmsegmentation', toy_configs.UPERNET, r'mIoU: '),
    ('classifier', 'mmpretrain', toy_configs.CLASSIFIER, r'accuracy/top1: '),
]


@pytest.mark.parametrize(
    'name,toolbox,text,metric', FLOWS, ids=[f[0] for f in FLOWS])
def test_train_then_evaluate(workspace, name, toolbox, text, metric):
    config = workspace / f'{name}.py'
    config.write_text(text)
    work_dir = workspace / 'work_dirs' / name
    train_log = mim(
        ['train', toolbox,
         str(config), '--work-dir',
         str(work_dir)], workspace)
    assert 'ParCNetV2' in train_log or 'parcnetv2' in train_log.lower()
    with open(work_dir / 'last_checkpoint') as file:
        checkpoint = file.read().strip()
    assert osp.isfile(checkpoint)
    test_log = mim([
        'test', toolbox,
        str(config), '--checkpoint', checkpoint, '--work-dir',
        str(work_dir / 'test')
    ], workspace)
    # the checkpoint went through mmengine's loading on this torch
    assert 'Load checkpoint from' in test_log
    line = next(line for line in test_log.splitlines()
                if re.search(metric, line))
    print(f'{name}: {line.strip()}')
    value = float(re.search(metric + r'(-?[0-9.]+)', line).group(1))
    assert value == value  # a number, not NaN


def test_config_of_another_project_trains(workspace):
    """A standard MMDetection config (RetinaNet) that only adds the
    custom_imports line and a ParCNetV2 backbone trains."""
    config = workspace / 'other_project.py'
    config.write_text(toy_configs.OTHER_PROJECT)
    work_dir = workspace / 'work_dirs' / 'other_project'
    log = mim(['train', 'mmdet',
               str(config), '--work-dir',
               str(work_dir)], workspace)
    losses = re.findall(r'Epoch\(train\) \[1\]\[\d+/\d+\].* loss: ([0-9.]+)',
                        log)
    assert losses and all(float(loss) > 0 for loss in losses)


def test_segmentor_trains_in_bfloat16_on_the_cpu(workspace):
    """The UperNet config's AMP on a CPU: one --cfg-options switches to
    CPUAwareAmpOptimWrapper (bf16 autocast, mmengine's loss scaling)."""
    config = workspace / 'upernet_bf16.py'
    config.write_text(toy_configs.UPERNET)
    log = mim([
        'train', 'mmsegmentation',
        str(config), '--work-dir',
        str(workspace / 'work_dirs' / 'upernet_bf16'), '--cfg-options',
        'optim_wrapper.type=CPUAwareAmpOptimWrapper',
        'optim_wrapper.dtype=bfloat16', 'optim_wrapper.loss_scale=dynamic'
    ], workspace)
    assert "type='CPUAwareAmpOptimWrapper'" in log
    losses = [
        float(v) for v in re.findall(r'Iter\(train\) .* loss: ([^ ]+)', log)
    ]
    assert len(losses) == 6
    assert all(loss == loss and loss < float('inf') for loss in losses)


# the shapes the backbone gets while testing, recorded by a hook
RECORD_INPUTS = """
custom_imports = dict(imports=['mmparcnet', 'flow_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RecordBackboneInputsHook')]
"""

# RetinaNet's own test-time augmentation, which its MMDetection config
# includes (MMDetection's TTA merges boxes only, so not Mask R-CNN's
# masks): three scales and a flip, here at toy sizes
# the toy classes, and a threshold that a toy epoch's scores pass (a
# second `model = ` in one file would replace the first)
RETINANET = toy_configs.OTHER_PROJECT.replace(
    'neck=dict(in_channels=[32, 48, 64]))',
    'neck=dict(in_channels=[32, 48, 64]),\n'
    '    bbox_head=dict(num_classes=3), test_cfg=dict(score_thr=0.0))')
RETINANET_TTA = """
_base_ = './retinanet.py'
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=s, keep_ratio=True)
         for s in [(128, 160), (64, 80), (192, 240)]],
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='LoadAnnotations', with_bbox=True)],
        [dict(type='PackDetInputs',
              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                         'scale_factor', 'flip', 'flip_direction'))]])
]
""" + RECORD_INPUTS


def trained(workspace, name, toolbox, text):
    """The last checkpoint of a toy config, trained here if not yet."""
    config = workspace / f'{name}.py'
    work_dir = workspace / 'work_dirs' / name
    if not (work_dir / 'last_checkpoint').exists():
        config.write_text(text)
        mim(['train', toolbox,
             str(config), '--work-dir',
             str(work_dir)], workspace)
    with open(work_dir / 'last_checkpoint') as file:
        return file.read().strip()


def tested(workspace, name, toolbox, text, checkpoint, *options):
    """``mim test`` of a config (with the input-recording hook) and the
    shapes its backbone got."""
    config = workspace / f'{name}.py'
    config.write_text(text)
    work_dir = workspace / 'work_dirs' / name
    log = mim([
        'test', toolbox,
        str(config), '--checkpoint', checkpoint, '--work-dir',
        str(work_dir), *options
    ], workspace)
    with open(work_dir / 'backbone_inputs.json') as file:
        return log, json.load(file)


def test_detector_test_time_augmentation(workspace):
    """``tools/test.py --tta`` of a detector whose TTA MMDetection has
    (RetinaNet): every image at three scales, each also flipped, merged by
    MMDetection's DetTTAModel and evaluated by its COCO metric; from the
    published checkpoint."""
    assert 'num_classes=3' in RETINANET  # the replacement above found
    trained_file = trained(workspace, 'retinanet', 'mmdet', RETINANET)
    # tested as released: published (meta and weights only) by
    # mmparcnet-convert, as the toolboxes' publish_model.py would
    from mmparcnet.tools.convert import main as convert_main
    assert convert_main([
        '--publish', '--force', trained_file,
        str(workspace / 'retinanet_published.pth')
    ]) == 0
    checkpoint = str(next(workspace.glob('retinanet_published-*.pth')))
    _, plain = tested(workspace, 'retinanet_plain', 'mmdet',
                      "_base_ = './retinanet.py'\n" + RECORD_INPUTS,
                      checkpoint)
    log, views = tested(workspace, 'retinanet_tta', 'mmdet', RETINANET_TTA,
                        checkpoint, '--tta')
    assert 'DetTTAModel' in log
    line = next(x for x in log.splitlines() if 'coco/bbox_mAP: ' in x)
    print(f'RetinaNet --tta: {line.strip()}')
    assert float(re.search(r'coco/bbox_mAP: (-?[0-9.]+)', line).group(1)) >= 0
    # six views of each batch, at three sizes (padded to multiples of 32)
    assert len(views) == 6 * len(plain)
    assert sum(v[0] for v in views) == 6 * sum(p[0] for p in plain)
    sizes = {tuple(v[2:]) for v in views}
    assert len(sizes) >= 3, sizes
    assert min(sizes) < min(tuple(p[2:]) for p in plain) < max(sizes)


def test_segmentor_test_time_augmentation(workspace):
    """``tools/test.py --tta`` of the UperNet config: the ADE20K base's six
    ratios, each also flipped, sliding windows within each, merged by
    MMSegmentation's SegTTAModel and evaluated by its IoU metric."""
    checkpoint = trained(workspace, 'upernet', 'mmsegmentation',
                         toy_configs.UPERNET)
    _, plain = tested(workspace, 'upernet_plain', 'mmsegmentation',
                      "_base_ = './upernet.py'\n" + RECORD_INPUTS, checkpoint)
    log, views = tested(workspace, 'upernet_tta', 'mmsegmentation',
                        "_base_ = './upernet.py'\n" + RECORD_INPUTS,
                        checkpoint, '--tta')
    assert 'SegTTAModel' in log
    line = next(x for x in log.splitlines() if 'mIoU: ' in x)
    print(f'UperNet --tta: {line.strip()}')
    # at least a window per view: 6 ratios x 2 flips of each image; views
    # smaller than the 64x64 window give the backbone smaller inputs
    images = len(plain) and sum(p[0] for p in plain)
    assert sum(v[0] for v in views) >= 12 * images > 0
    assert len({tuple(v[2:])
                for v in views}) > len({tuple(p[2:])
                                        for p in plain})
