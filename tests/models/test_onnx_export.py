"""``torch.onnx.export`` on the module itself, any input size afterwards."""
import inspect

import numpy as np
import onnxruntime
import pytest
import torch

from mmparcnet.models import ParCNetV2, ParCNetV2Classifier
from mmparcnet.models.layers.oversized_conv import oversized_conv

SMALL = dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32])
HAS_DYNAMO_EXPORTER = 'dynamo' in inspect.signature(
    torch.onnx.export).parameters
EXPORTERS = pytest.mark.parametrize(
    'dynamo', [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not HAS_DYNAMO_EXPORTER,
                reason=(f'torch.onnx.export of PyTorch {torch.__version__} '
                        'has no dynamo=True (from 2.5)')))
    ],
    ids=['legacy', 'dynamo'])


def export(model, path, dynamo):
    x = torch.randn(1, 3, 64, 96)
    if dynamo:
        dim = torch.export.Dim
        torch.onnx.export(
            model, (x, ),
            str(path),
            input_names=['image'],
            dynamo=True,
            dynamic_shapes=({
                2: dim('height', min=16, max=4096),
                3: dim('width', min=16, max=4096)
            }, ))
    else:
        # the keyword exists from PyTorch 2.5, with the legacy exporter the
        # default until 2.9
        legacy = dict(dynamo=False) if HAS_DYNAMO_EXPORTER else {}
        torch.onnx.export(
            model, (x, ),
            str(path),
            input_names=['image'],
            **legacy,
            dynamic_axes={'image': {
                2: 'height',
                3: 'width'
            }})
    return onnxruntime.InferenceSession(str(path))


def check_sizes(session, model, sizes):
    for size in sizes:
        x = torch.randn(1, 3, *size)
        outs = session.run(None, {'image': x.numpy()})
        with torch.no_grad():
            expected = model(x)
        expected = expected if isinstance(expected, tuple) else (expected, )
        assert len(outs) == len(expected)
        for out, ref in zip(outs, expected):
            assert out.shape == tuple(ref.shape)
            np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=0)


@EXPORTERS
@pytest.mark.parametrize('mode', ['interpolate', 'fixed'])
def test_backbone_exports_and_runs_at_other_sizes(tmp_path, dynamo, mode):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, kernel_mode=mode, pretrain_size=64).eval()
    session = export(model, tmp_path / 'backbone.onnx', dynamo)
    # neither is the export size, one is larger than the pretraining size
    check_sizes(session, model, [(80, 48), (123, 201)])


@EXPORTERS
def test_classifier_exports_and_runs_at_other_sizes(tmp_path, dynamo):
    torch.manual_seed(0)
    model = ParCNetV2Classifier(SMALL, num_classes=5, pretrain_size=64).eval()
    session = export(model, tmp_path / 'classifier.onnx', dynamo)
    check_sizes(session, model, [(64, 64), (100, 72)])


def test_matmul_formulation_equals_direct():
    torch.manual_seed(0)
    for mode in ('interpolate', 'fixed'):
        for size in ((1, 1), (5, 9), (17, 3)):
            x = torch.randn(
                2, 4, *size, dtype=torch.float64, requires_grad=True)
            k_h = torch.randn(
                4, 1, 15, 1, dtype=torch.float64, requires_grad=True)
            k_w = torch.randn(
                4, 1, 1, 15, dtype=torch.float64, requires_grad=True)
            local = torch.randn(4, 1, 7, 7, dtype=torch.float64)
            direct = oversized_conv(x, k_h, k_w, mode, 'direct', local)
            matmul = oversized_conv(x, k_h, k_w, mode, 'matmul', local)
            torch.testing.assert_close(matmul, direct)
            grads = [
                torch.autograd.grad(out.sum(), (x, k_h, k_w))
                for out in (direct, matmul)
            ]
            for a, b in zip(*grads):
                torch.testing.assert_close(b, a)
