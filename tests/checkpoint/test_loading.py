import os

import pytest
import torch

from mmparcnet.checkpoint import CheckpointError, load_pretrained
from mmparcnet.models import ParCNetV2

ATOL = 1e-5


def dense_model(arch, **kwargs):
    kwargs.setdefault('pretrain_size', 64)
    return ParCNetV2(arch, **kwargs).eval()


def features(model, x):
    with torch.no_grad():
        return model(x)


def assert_features(model, reference, key='feats_interpolated_kernel'):
    for feat, expected in zip(features(model, reference['x']), reference[key]):
        torch.testing.assert_close(feat, expected, atol=ATOL, rtol=0)


def test_published_classifier_via_init_cfg(reference, reference_arch,
                                           published_checkpoint):
    model = ParCNetV2(
        reference_arch,
        pretrain_size=64,
        out_indices=(3, ),
        gap_before_final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=published_checkpoint))
    model.init_weights()
    model.eval()
    state = reference['official_cls_checkpoint']['state_dict']
    logits = torch.nn.functional.linear(
        features(model, reference['x_pretrain_size'])[0], state['head.weight'],
        state['head.bias'])
    torch.testing.assert_close(
        logits, reference['logits_pretrain_size'], atol=ATOL, rtol=0)


def test_published_classifier_into_dense_backbone_reports_by_name(
        reference, reference_arch, published_checkpoint, mmengine_log):
    model = dense_model(
        reference_arch,
        init_cfg=dict(type='Pretrained', checkpoint=published_checkpoint))
    model.init_weights()
    text = mmengine_log.text
    assert 'classification layout' in text
    # the classifier's head and LayerNorm are not for a dense backbone, and
    # the dense output norms are not in a classifier checkpoint: all named
    for name in ('head.weight', 'norm.weight', 'norm.bias', 'norm0.weight',
                 'norm3.weight'):
        assert name in text
    # the trunk is loaded: same as the reference dense backbone up to the
    # output norms, which stay at 1 (as in the reference, which loads
    # classification checkpoints non-strictly)
    reference_model = dense_model(reference_arch)
    reference_model.load_state_dict(reference['official_det_state_dict'])
    for i in range(4):
        getattr(reference_model, f'norm{i}').weight.data.fill_(1.)
    for a, b in zip(
            features(model, reference['x']),
            features(reference_model, reference['x'])):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.fixture
def log_records():
    """The records mmengine's current logger emits, with their levels."""
    import logging

    from mmengine.logging import MMLogger

    class Keep(logging.Handler):

        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    logger = MMLogger.get_current_instance()
    keep = Keep()
    logger.addHandler(keep)
    yield keep.records
    logger.removeHandler(keep)


def _lines(records, level):
    import logging
    return [
        r.getMessage() for r in records
        if r.levelno == getattr(logging, level)
    ]


@pytest.mark.parametrize('layout', ['classification', 'openmmlab'])
def test_classifier_hand_over_is_one_info_line_not_a_warning(
        reference, reference_arch, tmp_path, log_records, layout):
    # the hand-over a fine-tuning run makes (the demo's, the paper's): a
    # classifier's head and pooled LayerNorm have no place in a dense
    # backbone, whose output norms start at 1; by design, so one info line
    if layout == 'classification':
        state = reference['official_cls_checkpoint']
    else:  # an mmpretrain classifier's own checkpoint
        classifier = ParCNetV2(
            reference_arch, out_indices=(3, ), gap_before_final_norm=True)
        state = {
            'state_dict': {
                'backbone.' + k: v
                for k, v in classifier.state_dict().items()
            }
        }
        state['state_dict']['head.fc.weight'] = torch.zeros(10, 64)
    file = tmp_path / 'classifier.pth'
    torch.save(state, file)
    dense_model(
        reference_arch, init_cfg=dict(type='Pretrained',
                                      checkpoint=str(file))).init_weights()
    assert _lines(log_records, 'WARNING') == []
    hand_over = [
        line for line in _lines(log_records, 'INFO')
        if 'is a classifier' in line
    ]
    assert len(hand_over) == 1, _lines(log_records, 'INFO')
    expected = (['head.weight', 'head.bias', 'norm.weight', 'norm.bias'] if
                layout == 'classification' else ['norm3.weight', 'norm3.bias'])
    for name in expected + [f'norm{i}.weight' for i in range(4)]:
        assert name in hand_over[0], name


def test_a_dense_checkpoint_without_an_output_norm_still_warns(
        reference_arch, tmp_path, log_records):
    state = ParCNetV2(reference_arch).state_dict()
    del state['norm2.weight']
    file = tmp_path / 'dense.pth'
    torch.save(state, file)
    dense_model(
        reference_arch, init_cfg=dict(type='Pretrained',
                                      checkpoint=str(file))).init_weights()
    warnings = _lines(log_records, 'WARNING')
    assert len(warnings) == 1 and 'norm2.weight' in warnings[0], warnings
    assert not any('is a classifier' in line
                   for line in _lines(log_records, 'INFO'))


def test_timm_wrappers_and_module_prefix(reference, reference_arch, tmp_path):
    state = reference['official_det_state_dict']
    wrapped = {
        'epoch': 3,
        'model': {
            'module.' + k: v
            for k, v in state.items()
        },
    }
    path = tmp_path / 'wrapped.pth'
    torch.save(wrapped, path)
    model = dense_model(reference_arch)
    load_pretrained(model, str(path))
    assert_features(model, reference)


def test_ema_weights_on_request(reference, reference_arch, tmp_path):
    state = reference['official_det_state_dict']
    zeros = {k: torch.zeros_like(v) for k, v in state.items()}
    path = tmp_path / 'ema.pth.tar'
    torch.save({'state_dict': zeros, 'state_dict_ema': dict(state)}, path)
    model = dense_model(reference_arch)
    load_pretrained(model, str(path), use_ema=True)
    assert_features(model, reference)
    with pytest.raises(CheckpointError, match='state_dict_ema'):
        torch.save({'state_dict': zeros}, path)
        load_pretrained(model, str(path), use_ema=True)


def test_openmmlab_checkpoint_with_and_without_prefix(reference,
                                                      reference_arch,
                                                      tmp_path):
    state = {
        'backbone.' + k: v
        for k, v in reference['official_det_state_dict'].items()
    }
    state['neck.lateral.weight'] = torch.zeros(3)
    path = tmp_path / 'detector.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': state}, path)
    for prefix in (None, 'backbone.'):
        model = dense_model(
            reference_arch,
            init_cfg=dict(
                type='Pretrained', checkpoint=str(path), prefix=prefix))
        model.init_weights()
        assert_features(model, reference)
    with pytest.raises(CheckpointError, match="prefix 'encoder.'"):
        load_pretrained(
            dense_model(reference_arch), str(path), prefix='encoder.')


def test_kernels_trained_at_another_length_are_resized(reference,
                                                       reference_arch,
                                                       published_checkpoint,
                                                       mmengine_log):
    # a model stored for 224 loads the kernels stored for 64: interpolating
    # them once at load time gives what interpolating the 64-kernels gives
    model = ParCNetV2(reference_arch, pretrain_size=224).eval()
    load_pretrained(model, published_checkpoint)
    assert 'resized' in mmengine_log.text
    assert 'from 31 to 111' in mmengine_log.text
    kernel = model.stages[0][0].token_mixer.dwconv1.conv_h.weight
    assert kernel.shape == (16, 1, 111, 1)
    stored = reference['official_cls_checkpoint']['state_dict'][
        'stages.0.0.token_mixer.dwconv1.conv_h.weight']
    # align_corners: taps 0, 55, 110 of 111 sit exactly on taps 0, 15, 30
    torch.testing.assert_close(kernel[:, :, [0, 55, 110]], stored[:, :,
                                                                  [0, 15, 30]])


def test_checkpoint_of_another_arch_names_the_first_mismatch(
        published_checkpoint):
    model = ParCNetV2(
        dict(depths=[1, 1, 2, 1], dims=[16, 32, 64, 64]), pretrain_size=64)
    with pytest.raises(
            CheckpointError, match=r'downsample_layers\.2\.conv\.weight'):
        load_pretrained(model, published_checkpoint)


def test_missing_truncated_and_foreign_files(published_checkpoint, tmp_path):
    model = ParCNetV2(
        dict(depths=[1, 1, 2, 1], dims=[16, 32, 48, 64]), pretrain_size=64)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_pretrained(model, str(tmp_path / 'nowhere.pth'))
    data = open(published_checkpoint, 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated'):
        load_pretrained(model, str(truncated))
    text = tmp_path / 'notes.txt'
    text.write_text('these are not weights\n' * 10)
    with pytest.raises(CheckpointError, match='not a readable PyTorch'):
        load_pretrained(model, str(text))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty'):
        load_pretrained(model, str(empty))
    other = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match='not a ParCNetV2 checkpoint'):
        load_pretrained(model, str(other))
    # none of that touched the file it was asked to read
    assert os.path.getsize(published_checkpoint) == len(data)


def test_a_checkpoint_never_runs_code(tmp_path):

    class Exploit:

        def __reduce__(self):
            return (os.system, ('touch ' + str(tmp_path / 'pwned'), ))

    path = tmp_path / 'evil.pth'
    torch.save({
        'state_dict': {
            'x': torch.zeros(1)
        },
        'payload': Exploit()
    }, path)
    model = ParCNetV2(dict(depths=[1], dims=[8]), out_indices=(0, ))
    with pytest.raises(CheckpointError, match='refused'):
        load_pretrained(model, str(path))
    assert not (tmp_path / 'pwned').exists()


def _interpolated_by_hand(kernel, length):
    """Linear interpolation with align_corners=True, tap by tap."""
    taps = kernel.shape[0]
    out = []
    for i in range(length):
        position = i * (taps - 1) / (length - 1)
        low = int(position)
        high = min(low + 1, taps - 1)
        frac = position - low
        out.append(kernel[low] * (1 - frac) + kernel[high] * frac)
    return torch.stack(out)


class _Detector(torch.nn.Module):

    def __init__(self, arch, pretrain_size):
        super().__init__()
        self.backbone = ParCNetV2(arch, pretrain_size=pretrain_size)
        self.neck = torch.nn.Conv2d(64, 4, 1)


@pytest.mark.parametrize('path',
                         ['init_cfg', 'load_checkpoint', 'load_state_dict'])
def test_every_load_path_resizes_kernels(reference_arch, tmp_path,
                                         mmengine_log, path):
    # a detector whose backbone stores kernels for 64 (31, 15, 7, 3 taps)
    # loaded into one that stores them for 96 (47, 23, 11, 5 taps):
    # init_cfg (Pretrained), mmengine's load_checkpoint (what load_from and
    # --resume run) and plain load_state_dict resize alike
    torch.manual_seed(0)
    source = _Detector(reference_arch, 64)
    source.backbone.init_weights()
    file = tmp_path / 'at64.pth'
    torch.save({'state_dict': source.state_dict()}, file)
    target = _Detector(reference_arch, 96)
    if path == 'init_cfg':
        target.backbone = ParCNetV2(
            reference_arch,
            pretrain_size=96,
            init_cfg=dict(type='Pretrained', checkpoint=str(file)))
        target.backbone.init_weights()
    elif path == 'load_checkpoint':
        from mmengine.runner import load_checkpoint
        load_checkpoint(target, str(file), strict=True)
    else:
        target.load_state_dict(source.state_dict())
    assert 'resized 2 oversized kernels from 31 to 47 taps' in \
        mmengine_log.text
    assert 'from 3 to 5 taps' in mmengine_log.text
    for stage, length in enumerate((47, 23, 11, 5)):
        mixer = target.backbone.stages[stage][0].token_mixer.dwconv1
        stored = source.backbone.stages[stage][0].token_mixer.dwconv1
        assert mixer.conv_h.weight.shape[2] == length
        expected_h = _interpolated_by_hand(
            stored.conv_h.weight[:, 0, :, 0].t(), length).t()
        expected_w = _interpolated_by_hand(
            stored.conv_w.weight[:, 0, 0, :].t(), length).t()
        torch.testing.assert_close(mixer.conv_h.weight[:, 0, :, 0], expected_h)
        torch.testing.assert_close(mixer.conv_w.weight[:, 0, 0, :], expected_w)
    # everything else loaded as it is
    torch.testing.assert_close(target.backbone.stages[0][0].mlp.fc1.weight,
                               source.backbone.stages[0][0].mlp.fc1.weight)
