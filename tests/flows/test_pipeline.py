"""The demo's pipeline at toy scale: pretrain a classifier with MMPretrain,
hand its backbone to a Mask R-CNN, fine-tune and evaluate with MMDetection.

The hand-over is checked against independent references: the classifier's
checkpoint as saved by ``mim train mmpretrain`` (every backbone tensor must
arrive unchanged), and the kernels the detector applies at a detection input
against a linear interpolation written here with ``numpy.interp``.
"""
import numpy as np
import pytest
import torch

from mmparcnet.checkpoint.safe_io import load_checkpoint_file
from mmparcnet.tools import demo

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmpretrain')


def weights(path):
    """The state dict of a Runner checkpoint or of a bare one."""
    checkpoint = load_checkpoint_file(path)
    return checkpoint.get('state_dict', checkpoint)


def hand_interpolation(kernel: np.ndarray, length: int) -> np.ndarray:
    """``align_corners=True`` linear interpolation of (C, K) to (C, length):
    output tap j sits at j (K - 1) / (length - 1) on the stored taps."""
    taps = kernel.shape[1]
    positions = np.arange(length) * (taps - 1) / max(length - 1, 1)
    return np.stack(
        [np.interp(positions, np.arange(taps), row) for row in kernel])


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp('pipeline')
    args = demo.parse_args([
        '--work-dir',
        str(root / 'work'), '--imagenet-root',
        str(root / 'imagenet'), '--coco-root',
        str(root / 'coco'), '--per-class-train', '6', '--per-class-val', '2',
        '--num-train', '6', '--num-val', '3', '--classifier-epochs', '1',
        '--detector-epochs', '1', '--skip-archs'
    ])
    steps = demo.Pipeline(args)
    steps.make_data()
    classifier = steps.pretrain_classifier()
    detector = steps.fine_tune_detector(classifier)
    return steps, classifier, detector


def test_each_model_is_evaluated_by_its_toolbox_before_and_after(pipeline):
    steps, _, _ = pipeline
    for name, (before, after) in steps.results.items():
        assert before is not None and after is not None, name
        assert 0 <= before <= 1 and 0 <= after <= 1, name
    assert set(steps.results) >= {
        'classifier top-1 (toy ImageNet val)',
        'detector bbox mAP (toy COCO val)', 'detector segm mAP'
    }


def test_detector_starts_from_the_classifier_backbone(pipeline):
    steps, classifier, _ = pipeline
    trained = weights(classifier)
    # the trunk: everything but the classifier's final LayerNorm, which
    # does not fit a dense output norm and is set aside (the log says so)
    handed = {
        k[len('backbone.'):]: v
        for k, v in trained.items()
        if k.startswith('backbone.') and not k.startswith('backbone.norm3.')
    }
    start = weights(steps.path('detector_untrained.pth'))
    received = {
        k[len('backbone.'):]: v
        for k, v in start.items() if k.startswith('backbone.')
    }
    # every trunk tensor arrives unchanged; the detector's output norms are
    # new
    assert set(received) - set(handed) == {f'norm{i}.weight' for i in range(4)}
    # and the fine-tuning run itself (mim train mmdet, its own options)
    # started from the same checkpoint
    with open(steps.path('detector_train.log')) as handle:
        log = handle.read()
    assert f'loaded {len(handed)} tensors into ParCNetV2 from {classifier}' \
        in log
    assert 'oversized kernels stored at [31, 15, 7, 3] taps' in log
    for key, value in handed.items():
        assert torch.equal(received[key], value), key


def test_detector_applies_the_classifier_kernels_resized(
        pipeline, monkeypatch):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import mmparcnet.models.ops.oversized as oversized_conv
    from mmparcnet.models.layers.geometry import stage_map_sizes
    steps, classifier, _ = pipeline
    stored = {
        k: v.numpy()
        for k, v in weights(classifier).items() if 'dwconv1.conv_' in k
    }
    register_all_modules()
    cfg = Config.fromfile(demo.config_path(demo.DETECTOR_CONFIG))
    backbone = MODELS.build(cfg.model).backbone
    start = weights(steps.path('detector_untrained.pth'))
    backbone.load_state_dict({
        k[len('backbone.'):]: v
        for k, v in start.items() if k.startswith('backbone.')
    })
    applied = []
    real = oversized_conv.resize_kernel

    def spy(weight, length, vertical):
        out = real(weight, length, vertical)
        applied.append((weight.detach().clone(), length, vertical, out))
        return out

    monkeypatch.setattr(oversized_conv, 'resize_kernel', spy)
    height, width = demo.DETECTION_TEST_SIZE
    with torch.no_grad():
        backbone.eval()(torch.randn(1, 3, height, width))
    # each stage's kernels, vertical and horizontal, resized to 2H-1 / 2W-1
    maps = stage_map_sizes(height)
    assert sorted(length for _, length, _, _ in applied) == sorted(
        [2 * m - 1 for m in maps] * 2)
    for weight, length, vertical, out in applied:
        flat = weight.reshape(weight.shape[0], -1).numpy()
        # the weight is one the classifier stored, unchanged
        assert any(value.shape == weight.shape
                   and np.array_equal(value, weight.numpy())
                   for value in stored.values())
        np.testing.assert_allclose(
            out.reshape(out.shape[0], -1).numpy(),
            hand_interpolation(flat, length),
            rtol=1e-5,
            atol=1e-6)
        # kernels really change length (the classifier saw 64x64 inputs)
        assert flat.shape[1] != length
