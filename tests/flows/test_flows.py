"""The flows users run: ``mim train`` then ``mim test`` (the toolboxes' own
tools and evaluation) on every config family, on generated data."""
import json
import os
import os.path as osp
import re

import pytest

from . import toy_configs
from .mim_runs import mim

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('flows')
    toy_configs.make_toy_data(
        root, coco=(6, 4), ade20k=(4, 2), imagenet=(2, 1))
    return root


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


def logged_losses(workspace, toolbox, text, name, options):
    """Train a config with a fixed seed (and ``options`` as --cfg-options):
    its log and the losses it logged."""
    config = workspace / f'{name}.py'
    config.write_text(text)
    log = mim([
        'train', toolbox,
        str(config), '--work-dir',
        str(workspace / 'work_dirs' / name), '--cfg-options',
        'randomness.seed=0', 'randomness.deterministic=True', *options
    ], workspace)
    losses = [
        float(v) for v in re.findall(
            r'Epoch\(train\) \[\d+\]\[\d+/\d+\].* loss: ([0-9.]+)', log)
    ]
    return log, losses


def test_compiled_blocks_train_as_the_eager_backbone(workspace):
    """A detector config whose backbone compiles its blocks
    (``compile_blocks``, one --cfg-options line) logs the eager run's
    losses, with the same seed."""
    _, eager = logged_losses(workspace, 'mmdet', toy_configs.OTHER_PROJECT,
                             'compiled_blocks_eager', [])
    log, compiled = logged_losses(
        workspace, 'mmdet', toy_configs.OTHER_PROJECT,
        'compiled_blocks_compiled',
        ['model.backbone.compile_blocks.backend=aot_eager'])
    assert "ParCNetV2: 4 blocks compiled one by one (torch.compile, " \
        "{'backend': 'aot_eager'})" in log
    assert len(eager) >= 2
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_a_classifier_config_with_compile_true_trains_as_eager(workspace):
    """mmengine's ``compile`` (the runner's whole train step, optimizer
    step included) on the classification config: the eager run's losses,
    with the same seed. Its parameter groups are plain dicts
    (``PlainGroupsOptimWrapperConstructor``), which Dynamo can step."""
    _, eager = logged_losses(workspace, 'mmpretrain', toy_configs.CLASSIFIER,
                             'compiled_classifier_eager', [])
    _, compiled = logged_losses(workspace, 'mmpretrain',
                                toy_configs.CLASSIFIER,
                                'compiled_classifier_compiled',
                                ['compile.backend=aot_eager'])
    assert len(eager) >= 3
    assert compiled == pytest.approx(eager, rel=1e-3)


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


def run_mim_test(workspace, name, toolbox, text, checkpoint, *options):
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
    _, plain = run_mim_test(workspace, 'retinanet_plain', 'mmdet',
                            "_base_ = './retinanet.py'\n" + RECORD_INPUTS,
                            checkpoint)
    log, views = run_mim_test(workspace, 'retinanet_tta', 'mmdet',
                              RETINANET_TTA, checkpoint, '--tta')
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
    _, plain = run_mim_test(workspace, 'upernet_plain', 'mmsegmentation',
                            "_base_ = './upernet.py'\n" + RECORD_INPUTS,
                            checkpoint)
    log, views = run_mim_test(workspace, 'upernet_tta', 'mmsegmentation',
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


def run_tool(toolbox, tool, *args, cwd):
    """``mim run TOOLBOX TOOL ARGS``: a script of the toolbox's tools/."""
    return mim(['run', toolbox, tool, *map(str, args)], cwd)


def test_detection_analysis_tools(workspace):
    """MMDetection's browse_dataset (the config's training pipeline drawn)
    and confusion_matrix (from tools/test.py --out) on a ParCNetV2
    detector's config."""
    trained_file = trained(workspace, 'retinanet', 'mmdet', RETINANET)
    out = workspace / 'tools_det'
    run_tool(
        'mmdet',
        'browse_dataset',
        'retinanet.py',
        '--output-dir',
        out / 'browse',
        '--not-show',
        cwd=workspace)
    # one drawing per training image
    assert len(os.listdir(out / 'browse')) == len(
        os.listdir(workspace / 'data' / 'toy_coco' / 'train2017'))
    mim([
        'test', 'mmdet', 'retinanet.py', '--checkpoint', trained_file,
        '--work-dir',
        str(out / 'test'), '--out',
        str(out / 'results.pkl')
    ], workspace)
    import pickle
    with open(out / 'results.pkl', 'rb') as file:
        results = pickle.load(file)
    assert len(results) == len(
        os.listdir(workspace / 'data' / 'toy_coco' / 'val2017'))
    assert all(len(r['pred_instances']['bboxes']) for r in results)
    run_tool(
        'mmdet',
        'confusion_matrix',
        'retinanet.py',
        out / 'results.pkl',
        out / 'matrix',
        cwd=workspace)
    assert (out / 'matrix' / 'confusion_matrix.png').stat().st_size > 0


def test_segmentation_analysis_tools(workspace):
    """MMSegmentation's browse_dataset, benchmark (200 test images: the toy
    set repeated) and confusion_matrix (from tools/test.py --out) on the
    UperNet config: what runs, and where the toolbox stops with any
    backbone."""
    trained_file = trained(workspace, 'upernet', 'mmsegmentation',
                           toy_configs.UPERNET)
    out = workspace / 'tools_seg'
    images = workspace / 'data' / 'toy_ade' / 'ADEChallengeData2016' / \
        'images'
    # browse_dataset stops in MMSegmentation's visualizer on this stack
    # with any config: it draws the class names into a zeros_like copy of
    # a transposed image, which OpenCV refuses ("Layout of the output
    # array img is incompatible with cv::Mat"). The same with
    # MMSegmentation's own ResNet config (no mmparcnet):
    (workspace / 'resnet_upernet.py').write_text(
        "_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'\n"
        "train_dataloader = dict(dataset=dict(\n"
        "    data_root='data/toy_ade/ADEChallengeData2016'))\n")
    for config in ('upernet.py', 'resnet_upernet.py'):
        code, log = mim([
            'run', 'mmseg', 'browse_dataset', config, '--output-dir',
            str(out / 'browse'), '--not-show'
        ],
                        workspace,
                        check=False)
        if code == 0:  # fixed upstream: then it draws the images
            assert any((out / 'browse').rglob('*.*')), log[-2000:]
        else:
            assert 'Layout of the output array img is incompatible' in log
    # the benchmark times batches 6 to 200 of the test loader
    (workspace / 'upernet_200.py').write_text("""
_base_ = './upernet.py'
test_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times=100,
    dataset={{_base_.test_dataloader.dataset}}))
""")
    log = run_tool(
        'mmseg',
        'benchmark',
        'upernet_200.py',
        trained_file,
        '--work-dir',
        out / 'benchmark',
        cwd=workspace)
    fps = float(re.search(r'Overall fps: ([0-9.]+) img / s', log).group(1))
    print(f'UperNet (toy) benchmark: {fps} img / s')
    assert fps > 0
    mim([
        'test', 'mmsegmentation', 'upernet.py', '--checkpoint', trained_file,
        '--work-dir',
        str(out / 'test'), '--out',
        str(out / 'predictions')
    ], workspace)
    predictions = sorted(os.listdir(out / 'predictions'))
    assert len(predictions) == len(os.listdir(images / 'validation'))
    # MMSegmentation 1.2.2's confusion_matrix fails on ADE20K with any
    # backbone, two ways: its plot takes 2 inches per class at 300 dpi (for
    # 150 classes a 90000x72000-pixel figure: out of memory), and its
    # matrix reduces the zero label a second time (the dataset's
    # annotations come reduced already: 0 is ignored, k is k - 1), so that
    # the first class's pixels drop out and the "other" pixels (255) wrap
    # around in uint8 arithmetic into other cells. Shown on its own
    # function, against a count of the annotation files:
    import importlib.util

    import mmseg
    import numpy as np
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from PIL import Image
    script = osp.join(
        osp.dirname(mmseg.__file__), '.mim', 'tools', 'analysis_tools',
        'confusion_matrix.py')
    spec = importlib.util.spec_from_file_location('confusion_matrix', script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(workspace / 'upernet.py'))
    cfg.test_dataloader.dataset.data_root = str(
        workspace / cfg.test_dataloader.dataset.data_root)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    results = [
        np.array(Image.open(out / 'predictions' / name))
        for name in predictions
    ]
    matrix = tool.calculate_confusion_matrix(dataset, results)
    annotations = images.parent / 'annotations' / 'validation'
    labels = np.concatenate([
        np.array(Image.open(annotations / name)).ravel()
        for name in sorted(os.listdir(annotations))
    ])
    # what it should count: every pixel not labelled 0; what it counts:
    # every pixel not labelled 1
    print(f'MMSegmentation confusion_matrix counts {int(matrix.sum())} '
          f'pixels of {int((labels != 0).sum())} labelled ones')
    assert matrix.sum() == (labels != 1).sum() != (labels != 0).sum()
