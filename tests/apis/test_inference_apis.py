"""The toolboxes' high-level inference APIs on real photographs.

Each runs in a fresh process in which nothing but the config's
``custom_imports`` imports this package, on photographs that an installed
package bundles (matplotlib's sample data), alone and in a batch of two of
different sizes. Weights are the configs' initialisation: what is checked is
that every API builds the model, runs it and returns what it returns for
any backbone, and how an image's result in a batch compares with its result
alone.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain',
                                  'matplotlib')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(REPO, 'configs', 'detection',
                    'mask-rcnn_parcnetv2-nano_fpn_toy-coco.py')
SEGMENTOR = osp.join(REPO, 'configs', 'segmentation',
                     'upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512.py')
CLASSIFIER = osp.join(REPO, 'configs', 'classification',
                      'parcnetv2-nano_toy-shapes-64px.py')

PHOTOS = """
import json, sys
import numpy as np
import torch
from matplotlib import cbook
from PIL import Image
torch.manual_seed(0)
photo = np.asarray(Image.open(cbook.get_sample_data('grace_hopper.jpg')))
photo = np.ascontiguousarray(photo[..., ::-1])  # BGR, as mmcv reads files
small = np.ascontiguousarray(photo[40:360, 60:500])  # another size
assert 'mmparcnet' not in sys.modules
report = {}
"""

SCRIPTS = {
    'mmdet':
    PHOTOS + f"""
from mmdet.apis import DetInferencer, inference_detector, init_detector
model = init_detector({DETECTOR!r}, device='cpu')
alone = inference_detector(model, small)
both = inference_detector(model, [photo, small])
report['shapes'] = [list(r.metainfo['ori_shape']) for r in both]
report['alone_shape'] = list(alone.metainfo['ori_shape'])
inferencer = DetInferencer(model={DETECTOR!r}, device='cpu',
                           show_progress=False)
out = inferencer([photo, small], return_datasamples=False)
report['inferencer'] = [sorted(p) for p in out['predictions']]
# the backbone on what the data preprocessor makes of `small`: alone
# (padded to the size divisor), beside a copy of itself, and padded with
# zeros into a batch with the larger photograph, where every oversized
# kernel is resized to the padded map and meets the padding
pre = model.data_preprocessor
def normalized(image):
    t = torch.from_numpy(image).permute(2, 0, 1).float()[[2, 1, 0]]
    return (t - pre.mean) / pre.std
def padded(t, height, width):
    return torch.nn.functional.pad(
        t, (0, width - t.shape[2], 0, height - t.shape[1]))
def stages(batch, index):
    with torch.no_grad():
        return [f[index] for f in model.backbone(batch)]
a = padded(normalized(small), 320, 448)
alone = stages(a[None], 0)
pairs = {{'same size': torch.stack([a, a]),
         'padded': torch.stack([padded(normalized(photo), 608, 512),
                                padded(a, 608, 512)])}}
report['backbone_batch_vs_alone'] = {{}}
for name, batch in pairs.items():
    rows = []
    for x, y in zip(alone, stages(batch, 1)):
        y = y[:, :x.shape[1], :x.shape[2]]
        rows.append([float((x - y).abs().max() / x.abs().max()),
                     float((x - y).abs().mean() / x.abs().mean())])
    report['backbone_batch_vs_alone'][name] = rows
""",
    'mmseg':
    PHOTOS + f"""
from mmseg.apis import MMSegInferencer, inference_model, init_model
model = init_model({SEGMENTOR!r}, device='cpu')
# MMSegmentation's data preprocessor refuses a test batch of several sizes
# (any backbone): a batch of two photographs of one size
mirror = np.ascontiguousarray(photo[:, ::-1])
alone = inference_model(model, mirror)
both = inference_model(model, [photo, mirror])
report['shapes'] = [list(r.pred_sem_seg.data.shape[1:]) for r in both]
report['alone_shape'] = list(alone.pred_sem_seg.data.shape[1:])
a, b = alone.seg_logits.data, both[1].seg_logits.data
report['batch_vs_alone_max'] = float((a - b).abs().max())
report['batch_vs_alone_scale'] = float(a.abs().max())
report['label_agreement'] = float(
    (alone.pred_sem_seg.data == both[1].pred_sem_seg.data).float().mean())
# the inferencer runs one image at a time: sizes may differ
out = MMSegInferencer(model={SEGMENTOR!r}, device='cpu')([photo, small])
report['inferencer'] = [list(p.shape) for p in out['predictions']]
""",
    'mmpretrain':
    PHOTOS + f"""
from mmpretrain import FeatureExtractor, get_model
from mmpretrain.apis import ImageClassificationInferencer
inferencer = ImageClassificationInferencer({CLASSIFIER!r}, device='cpu')
both = inferencer([photo, small])
alone = inferencer(small)
report['scores'] = [len(r['pred_scores']) for r in both]
report['batch_vs_alone_max'] = float(np.abs(
    np.asarray(both[1]['pred_scores']) -
    np.asarray(alone[0]['pred_scores'])).max())
model = get_model({CLASSIFIER!r})
report['get_model'] = type(model.backbone).__name__
feats = FeatureExtractor(model, device='cpu')([photo, small])
report['features'] = [[list(f.shape) for f in r] for r in feats]
""",
}


def run(toolbox, tmp_path):
    # the report goes to a file: the inferencers' progress bars share stdout
    # and, where it is not a terminal (CI), leave a line open
    path = tmp_path / 'report.json'
    script = SCRIPTS[toolbox] + (
        '\nwith open(sys.argv[1], "w") as f:\n    json.dump(report, f)\n')
    result = subprocess.run(
        [sys.executable, '-c', script, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert path.exists(), (result.stdout + result.stderr)[-4000:]
    return json.loads(path.read_text())


def test_mmdet_apis_on_photographs(tmp_path):
    report = run('mmdet', tmp_path)
    assert report['shapes'] == [[600, 512], [320, 440]]
    assert report['alone_shape'] == [320, 440]
    for keys in report['inferencer']:
        assert {'bboxes', 'labels', 'scores'} <= set(keys)
    # an image beside another of its size: its features alone, to rounding
    for worst, mean in report['backbone_batch_vs_alone']['same size']:
        assert worst < 1e-5
    # padded into a batch with a larger image, its kernels are resized to
    # the padded map and meet the padding: the features of every stage
    # change (docs/backbone.md, "An image in a batch")
    padded = report['backbone_batch_vs_alone']['padded']
    print('nano backbone, 320x448 photo padded to 608x512 vs alone, '
          'relative max / mean |diff| per stage: ' +
          ', '.join(f'{w:.3f} / {m:.3f}' for w, m in padded))
    assert all(mean > 1e-3 for _, mean in padded)


def test_mmseg_apis_on_photographs(tmp_path):
    report = run('mmseg', tmp_path)
    # a label per pixel of each photograph, at its own size
    assert report['shapes'] == [[600, 512], [600, 512]]
    assert report['alone_shape'] == [600, 512]
    assert report['inferencer'] == [[600, 512], [320, 440]]
    # one size, no padding: an image's logits do not depend on its batch
    # beyond float rounding
    print(f"UperNet-T batch vs alone: max |logit diff| "
          f"{report['batch_vs_alone_max']:.3g} of "
          f"{report['batch_vs_alone_scale']:.3g}, labels agree on "
          f"{report['label_agreement']:.4f} of the pixels")
    assert report['batch_vs_alone_max'] < 1e-4 * report['batch_vs_alone_scale']


def test_mmpretrain_apis_on_photographs(tmp_path):
    report = run('mmpretrain', tmp_path)
    assert report['scores'] == [3, 3]
    # the test pipeline resizes and crops every image to one size, so an
    # image's scores do not depend on its batch
    assert report['batch_vs_alone_max'] < 1e-5
    assert report['get_model'] == 'ParCNetV2'
    assert len(report['features']) == 2
