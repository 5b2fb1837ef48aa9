"""mmengine checkpoints on torch >= 2.6 once mmparcnet is imported."""
import pickletools

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

import mmparcnet  # noqa: F401
from mmparcnet.checkpoint import CheckpointError, load_checkpoint_file
from mmparcnet.checkpoint.safe_io import TRUST_ENV
from mmparcnet.models import ParCNetV2


class TinyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = ParCNetV2(
            dict(depths=[1, 1], dims=[8, 16]),
            out_indices=(1, ),
            gap_before_final_norm=True)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.head(self.backbone(inputs)[0])
        if mode == 'loss':
            return dict(loss=torch.nn.functional.cross_entropy(logits, labels))
        return logits


class RandomImages(torch.utils.data.Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(
            inputs=torch.randn(3, 32, 32, generator=generator),
            labels=torch.tensor(index % 2))


def make_runner(work_dir, max_iters=4, **kwargs):
    return Runner(
        model=TinyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=RandomImages(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('runner')
    runner = make_runner(work_dir)
    runner.train()
    return work_dir / 'iter_4.pth', runner


def globals_in(path):
    """Every global a torch.save file's pickle asks for."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith('data.pkl'))
        data = archive.read(name)
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
            strings.append(arg)
        elif opcode.name == 'GLOBAL':
            found.add(arg.replace(' ', '.'))
        elif opcode.name == 'STACK_GLOBAL':
            found.add('.'.join(strings[-2:]))
    return found


def test_runner_checkpoint_holds_no_getattr(runner_checkpoint):
    path, _ = runner_checkpoint
    found = globals_in(path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in found
    assert not any('getattr' in name for name in found), found


def test_runner_checkpoint_loads_through_mmengine(runner_checkpoint, tmp_path):
    path, trained = runner_checkpoint
    # mmengine's own loading path (what --resume, load_from and
    # tools/test.py use), with torch's default weights_only=True
    checkpoint = _load_checkpoint(str(path), map_location='cpu')
    assert checkpoint['meta']['iter'] == 4
    buffers = checkpoint['message_hub']['log_scalars']
    assert isinstance(buffers['train/loss'], HistoryBuffer)
    assert buffers['train/loss'].mean() == \
        trained.message_hub.get_scalar('train/loss').mean()
    # resume: a new runner picks up weights, optimizer and iteration
    resumed = make_runner(
        tmp_path, max_iters=6, resume=True, load_from=str(path))
    resumed.train()
    assert resumed.iter == 6
    # load_from + evaluation-style loading
    loaded = make_runner(tmp_path / 'eval')
    loaded.load_checkpoint(str(path))
    for key, value in trained.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)


def old_mmengine_getstate(self):
    # what mmengine 0.10.7 writes without mmparcnet: the statistic methods
    # go into the pickle, by way of builtins.getattr
    self.__dict__.update(statistics_methods=self._statistics_methods)
    return self.__dict__


@pytest.fixture
def old_checkpoint(tmp_path, monkeypatch):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / 'old_epoch_1.pth'
    with monkeypatch.context() as patch:
        patch.setattr(HistoryBuffer, '__getstate__', old_mmengine_getstate)
        torch.save(
            {
                'meta': {
                    'epoch': 1
                },
                'message_hub': {
                    'log_scalars': {
                        'loss': buffer
                    }
                },
                'state_dict': {
                    'w': torch.ones(2)
                }
            }, path)
    assert any('getattr' in name for name in globals_in(path))
    return path


def test_old_checkpoint_is_refused_with_a_clear_message(
        old_checkpoint, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(CheckpointError) as error:
        _load_checkpoint(str(old_checkpoint), map_location='cpu')
    message = str(error.value)
    assert 'getattr' in message and TRUST_ENV in message
    assert 'mmparcnet-convert --resave' in message


def test_trust_switch_loads_an_old_checkpoint(old_checkpoint, monkeypatch,
                                              tmp_path):
    monkeypatch.setenv(TRUST_ENV, str(tmp_path))
    checkpoint = _load_checkpoint(str(old_checkpoint), map_location='cpu')
    assert checkpoint['message_hub']['log_scalars']['loss'].current() == 1.5
    monkeypatch.setenv(TRUST_ENV, str(tmp_path / 'elsewhere'))
    with pytest.raises(CheckpointError, match='refused'):
        _load_checkpoint(str(old_checkpoint), map_location='cpu')


def test_numpy_values_load_safely(tmp_path):
    import numpy as np
    path = tmp_path / 'numpy.pth'
    torch.save(
        {
            'a': np.arange(3.),
            'b': np.float32(2.5),
            'c': np.int64(3),
            'd': np.array(['x', 'y'])
        }, path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['a'].tolist() == [0., 1., 2.] and loaded['b'] == 2.5
    assert loaded['d'].tolist() == ['x', 'y']


# The restricted unpickler is what PyTorch < 2.4 gets instead of an
# allowlisted weights_only load; it is checked here on this PyTorch, against
# the same files as the weights_only path.
def test_restricted_unpickler_loads_what_weights_only_loads(
        runner_checkpoint, published_checkpoint, tmp_path):
    import collections

    import numpy as np

    from mmparcnet.checkpoint.safe_io import load_restricted
    path, _ = runner_checkpoint
    checkpoint = load_restricted(str(path))
    expected = load_checkpoint_file(str(path))
    assert checkpoint['meta']['iter'] == 4
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert loss.mean() == \
        expected['message_hub']['log_scalars']['train/loss'].mean()
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(checkpoint['state_dict'][key], value)
    # a published timm-style checkpoint (argparse.Namespace inside)
    published = load_restricted(published_checkpoint)
    reference = load_checkpoint_file(published_checkpoint)
    assert published['args'] == reference['args']
    assert published['state_dict'].keys() == reference['state_dict'].keys()
    numpy_file = tmp_path / 'numpy.pth'
    torch.save(
        {
            'a': np.arange(3.),
            'b': np.float32(2.5),
            'p': torch.nn.Parameter(torch.ones(2)),
            'dtype': torch.float16,
            'size': torch.Size([2, 3]),
            'counts': collections.Counter(square=2, disc=1),
        }, numpy_file)
    loaded = load_restricted(str(numpy_file))
    assert loaded['counts'] == collections.Counter(square=2, disc=1)
    assert loaded['a'].tolist() == [0., 1., 2.] and loaded['b'] == 2.5
    assert loaded['dtype'] is torch.float16 and loaded['size'] == (2, 3)


def test_restricted_unpickler_refuses_code(old_checkpoint, tmp_path,
                                           monkeypatch):
    import os
    import pickle

    from mmparcnet.checkpoint import safe_io
    marker = tmp_path / 'ran'

    class Exploit:

        def __reduce__(self):
            return (os.system, ('touch ' + str(marker), ))

    payload = tmp_path / 'payload.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'p': Exploit()}, payload)
    for path in (payload, old_checkpoint):
        with pytest.raises(pickle.UnpicklingError, match='not an allowed'):
            safe_io.load_restricted(str(path))
    assert not marker.exists()
    # and through the package's loader, as on PyTorch < 2.4
    monkeypatch.delattr(torch.serialization, 'safe_globals', raising=False)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(CheckpointError, match='refused'):
        load_checkpoint_file(str(payload))
    assert not marker.exists()


def test_restricted_unpickler_never_changes_a_class():
    # GLOBAL argparse.Namespace, then BUILD with {'pwned': 1}: setting the
    # state of the class itself would change it for the whole process
    import argparse
    import io
    import pickle

    from mmparcnet.checkpoint.safe_io import _RestrictedUnpickler
    data = (b'\x80\x02cargparse\nNamespace\n}X\x05\x00\x00\x00pwnedK\x01sb.')
    with pytest.raises(pickle.UnpicklingError, match='BUILD'):
        _RestrictedUnpickler(io.BytesIO(data)).load()
    assert not hasattr(argparse.Namespace, 'pwned')
    # an instance may get its state (what a published checkpoint's args do)
    instance = (b'\x80\x02cargparse\nNamespace\n)\x81}X\x02\x00\x00\x00lr'
                b'G?\xb9\x99\x99\x99\x99\x99\x9asb.')
    assert _RestrictedUnpickler(io.BytesIO(instance)).load().lr == 0.1
