"""``torch.onnx.export`` on the module itself, any input size afterwards."""
import inspect

import numpy as np
import onnxruntime
import pytest
import torch

from mmparcnet.checkpoint.loading import load_state_into
from mmparcnet.models import ParCNetV2, ParCNetV2Classifier
from mmparcnet.models.ops import context
from mmparcnet.models.ops.oversized import oversized_conv

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
                2: dim('height', min=3, max=4096),
                3: dim('width', min=3, max=4096)
            }, ))
    else:
        export_legacy(model, path, {2: 'height', 3: 'width'})
    return onnxruntime.InferenceSession(str(path))


def export_legacy(model, path, dynamic_axes):
    """The legacy (tracing) exporter on a 64x96 image, ``dynamic_axes`` of
    the input named as given."""
    # the keyword exists from PyTorch 2.5, with the legacy exporter the
    # default until 2.9
    legacy = dict(dynamo=False) if HAS_DYNAMO_EXPORTER else {}
    torch.onnx.export(
        model, (torch.randn(1, 3, 64, 96), ),
        str(path),
        input_names=['image'],
        dynamic_axes={'image': dynamic_axes},
        **legacy)


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
    # none is the export size, one is larger than the pretraining size, one
    # has maps of one pixel (a one-tap kernel) in height and in width
    check_sizes(session, model, [(80, 48), (123, 201), (3, 17), (17, 3)])


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
            direct = oversized_conv(x, k_h, k_w, mode, 'direct')
            matmul = oversized_conv(x, k_h, k_w, mode, 'matmul')
            torch.testing.assert_close(matmul, direct)
            grads = [
                torch.autograd.grad(out.sum(), (x, k_h, k_w))
                for out in (direct, matmul)
            ]
            for a, b in zip(*grads):
                torch.testing.assert_close(b, a)


@pytest.fixture
def export_forms(monkeypatch):
    """The forms the layers take while exporting, run eagerly."""
    monkeypatch.setattr(context, 'exporting', lambda: True)


@pytest.mark.parametrize('mode', ['interpolate', 'fixed'])
def test_export_forms_match_the_reference_fixtures(reference, reference_arch,
                                                   export_forms, mode):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=reference['config']['pretrain_size'],
        kernel_mode=mode).eval()
    load_state_into(model, dict(reference['official_det_state_dict']))
    expected = reference['feats_fixed_kernel' if mode ==
                         'fixed' else 'feats_interpolated_kernel']
    with torch.no_grad():
        outs = model(reference['x'])
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_export_forms_equal_the_plain_computation(monkeypatch):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, pretrain_size=64).eval()
    # batch 2 and an odd size: the forms must not assume a batch of one
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        model.set_fast_paths(False)
        plain = model(x)
        model.set_fast_paths(True)
        monkeypatch.setattr(context, 'exporting', lambda: True)
        exported = model(x)
    for a, b in zip(exported, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('mode', ['interpolate', 'fixed'])
def test_export_with_a_dynamic_batch_runs_other_batch_sizes(tmp_path, mode):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, kernel_mode=mode, pretrain_size=64).eval()
    path = str(tmp_path / 'backbone.onnx')
    export_legacy(model, path, {0: 'batch', 2: 'height', 3: 'width'})
    session = onnxruntime.InferenceSession(path)
    for batch, size in ((2, (45, 70)), (3, (17, 3))):
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            expected = model(x)
        for out, ref in zip(session.run(None, {'image': x.numpy()}), expected):
            np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=0)


def test_a_stages_blocks_share_their_size_computation(tmp_path):
    # with dynamic sizes each block would record its own shape arithmetic
    # (about 30 nodes); the blocks of a stage share one, so that ONNX
    # Runtime's optimiser merges what they build from it: a deeper stage
    # adds no shape nodes to the optimised graph
    import collections

    import onnx

    counts = []
    for depth in (2, 4):
        torch.manual_seed(0)
        model = ParCNetV2(
            dict(depths=[1, 1, depth, 1], dims=[8, 16, 24, 32]),
            pretrain_size=64).eval()
        path = str(tmp_path / f'depth{depth}.onnx')
        export_legacy(model, path, {2: 'height', 3: 'width'})
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f'opt{depth}.onnx')
        onnxruntime.InferenceSession(path, options)
        graph = onnx.load(options.optimized_model_filepath).graph
        kinds = collections.Counter(node.op_type for node in graph.node)
        counts.append({k: kinds[k] for k in ('Shape', 'Unsqueeze', 'Concat')})
    assert counts[0] == counts[1], counts
