import hashlib
import os
import subprocess
import sys
import textwrap

import torch

from mmparcnet.checkpoint import load_checkpoint_file
from mmparcnet.models import ParCNetV2
from mmparcnet.tools.convert import main as convert_main


def test_convert_published_classifier(published_checkpoint, reference,
                                      tmp_path, capsys):
    dst = tmp_path / 'converted.pth'
    assert convert_main([published_checkpoint, str(dst)]) == 0
    assert 'classification layout' in capsys.readouterr().out
    written = load_checkpoint_file(str(dst))  # weights_only=True
    state = written['state_dict']
    source = reference['official_cls_checkpoint']['state_dict']
    assert torch.equal(state['head.fc.weight'], source['head.weight'])
    assert torch.equal(state['backbone.norm3.bias'], source['norm.bias'])
    assert torch.equal(state['backbone.stages.2.1.res_scale1.scale'],
                       source['stages.2.1.res_scale1.scale'])
    assert sorted(k for k in state if not k.startswith('backbone.')) == [
        'head.fc.bias', 'head.fc.weight'
    ]
    assert written['meta']['mmparcnet']['depths'] == [1, 1, 2, 1]


def test_converted_checkpoint_in_a_dense_backbone(published_checkpoint,
                                                  reference, reference_arch,
                                                  tmp_path, mmengine_log):
    dst = tmp_path / 'converted.pth'
    assert convert_main([published_checkpoint, str(dst)]) == 0
    model = ParCNetV2(
        reference_arch,
        pretrain_size=64,
        init_cfg=dict(
            type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    model.init_weights()
    # the classifier's LayerNorm (now backbone.norm3 with a bias) is not
    # loaded into the dense norm3, and that is said, as the hand-over it is
    said = [
        line for line in mmengine_log.text.splitlines()
        if 'is a classifier' in line
    ]
    assert len(said) == 1 and 'norm3.weight, norm3.bias' in said[0], said
    assert torch.all(model.norm3.weight == 1)
    source = reference['official_cls_checkpoint']['state_dict']
    torch.testing.assert_close(model.stages[3][0].mlp.fc2.weight,
                               source['stages.3.0.mlp.fc2.weight'])


def test_convert_refuses_to_overwrite(published_checkpoint, tmp_path, capsys):
    dst = tmp_path / 'converted.pth'
    dst.write_bytes(b'precious')
    assert convert_main([published_checkpoint, str(dst)]) == 1
    assert 'exists' in capsys.readouterr().err
    assert dst.read_bytes() == b'precious'
    assert convert_main([published_checkpoint, str(dst), '--force']) == 0
    assert 'head.fc.weight' in load_checkpoint_file(str(dst))['state_dict']
    # nothing but the result is left in the folder
    assert sorted(
        os.listdir(tmp_path)) == ['converted.pth', 'parcnetv2_custom.pth.tar']


def test_convert_reports_bad_sources(tmp_path, capsys):
    assert convert_main(
        [str(tmp_path / 'missing.pth'),
         str(tmp_path / 'out.pth')]) == 1
    assert 'missing.pth' in capsys.readouterr().err
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x80\x02junk')
    assert convert_main([str(junk), str(tmp_path / 'out.pth')]) == 1
    assert 'not a readable PyTorch checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists()


def test_resave_makes_an_old_checkpoint_safe(tmp_path, monkeypatch):
    from mmengine.logging import HistoryBuffer

    def old_getstate(self):
        self.__dict__.update(statistics_methods=self._statistics_methods)
        return self.__dict__

    buffer = HistoryBuffer()
    buffer.update(2.0)
    old = tmp_path / 'old.pth'
    with monkeypatch.context() as patch:
        patch.setattr(HistoryBuffer, '__getstate__', old_getstate)
        torch.save({'hub': buffer, 'state_dict': {'w': torch.ones(1)}}, old)
    new = tmp_path / 'new.pth'
    assert convert_main(['--resave', str(old), str(new)]) == 1  # no trust
    assert not new.exists()
    assert convert_main(['--resave', '--trust-source',
                         str(old),
                         str(new)]) == 0
    assert load_checkpoint_file(str(new))['hub'].current() == 2.0


def test_publish_keeps_meta_and_weights_readable_by_a_plain_load(tmp_path):
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('publish_test')
    hub.update_scalar('train/loss', 0.5)
    state = {'backbone.w': torch.arange(6.).view(2, 3)}
    src = tmp_path / 'epoch_3.pth'
    torch.save(
        dict(
            meta=dict(epoch=3, dataset_meta=dict(classes=('a', 'b'))),
            state_dict=state,
            message_hub=hub.state_dict(),
            optimizer=dict(state={}, param_groups=[dict(lr=0.1)])), src)
    assert convert_main(['--publish',
                         str(src),
                         str(tmp_path / 'pub.pth')]) == 0
    published = [p for p in os.listdir(tmp_path) if p.startswith('pub-')]
    assert len(published) == 1
    path = tmp_path / published[0]
    # named by the first 8 hex digits of the file's sha256
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert published[0] == f'pub-{digest}.pth'
    # a plain torch.load in a process without mmparcnet reads it (torch's
    # default weights_only: True from torch 2.6), but not the source
    read = textwrap.dedent('''
        import sys, torch
        checkpoint = torch.load(sys.argv[1], map_location='cpu')
        assert 'mmparcnet' not in sys.modules
        print(sorted(checkpoint), checkpoint['meta']['epoch'],
              checkpoint['state_dict']['backbone.w'].sum().item())
    ''')
    result = subprocess.run(
        [sys.executable, '-c', read, str(path)],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["['meta',", "'state_dict']", '3', '15.0']
    if tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6):
        source = subprocess.run(
            [sys.executable, '-c', read, str(src)],
            capture_output=True,
            text=True)
        assert source.returncode != 0 and 'HistoryBuffer' in source.stderr
    # not over an existing file, and not from a file with no state_dict
    assert convert_main(['--publish',
                         str(src),
                         str(tmp_path / 'pub.pth')]) == 1
    torch.save({'w': torch.ones(1)}, tmp_path / 'bare.pth')
    assert convert_main(
        ['--publish',
         str(tmp_path / 'bare.pth'),
         str(tmp_path / 'x.pth')]) == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith('x')]
