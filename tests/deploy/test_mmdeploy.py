"""MMDeploy 1.3.1 (PyPI) exports a ParCNetV2 Mask R-CNN to ONNX Runtime.

On torch >= 2.9 MMDeploy 1.3.1 needs two lines, whatever the backbone
(docs/tools.md, "With MMDeploy"): ``torch.onnx.export`` defaults to the
dynamo exporter, which MMDeploy's rewriting does not drive (it fails in
``torch.export`` on MMDeploy's dynamic axes), and its RoIAlign symbolic
imports ``_cast_Long``, which ``torch.onnx.symbolic_opset9`` no longer has.
With them, MMDeploy's own ``torch2onnx`` exports with dynamic height and
width, and ONNX Runtime's outputs at another input size are compared with
MMDeploy's PyTorch model run under the same rewriting (what the export
recorded).
"""
import json
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.requires('mmcv.ops', 'mmdet', 'mmdeploy',
                                  'onnxruntime')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DETECTOR = osp.join(REPO, 'configs', 'detection',
                    'mask-rcnn_parcnetv2-nano_fpn_toy-coco.py')

# MMDeploy's deploy config for instance segmentation on ONNX Runtime with
# dynamic shapes (as its configs/mmdet/instance-seg/ files compose it)
DEPLOY = """
onnx_config = dict(
    type='onnx', export_params=True, keep_initializers_as_inputs=False,
    opset_version=11, save_file='end2end.onnx', input_names=['input'],
    output_names=['dets', 'labels', 'masks'], input_shape=None,
    optimize=True,
    dynamic_axes={'input': {0: 'batch', 2: 'height', 3: 'width'},
                  'dets': {0: 'batch', 1: 'num_dets'},
                  'labels': {0: 'batch', 1: 'num_dets'},
                  'masks': {0: 'batch', 1: 'num_dets', 2: 'height',
                            3: 'width'}})
codebase_config = dict(
    type='mmdet', task='ObjectDetection', model_type='end2end',
    post_processing=dict(score_threshold=0.05, confidence_threshold=0.005,
                         iou_threshold=0.5, max_output_boxes_per_class=200,
                         pre_top_k=5000, keep_top_k=100,
                         background_label_id=-1),
    export_postprocess_mask=False)
backend_config = dict(type='onnxruntime')
"""

# the two lines for MMDeploy 1.3.1 on a newer torch (docs/tools.md)
SHIMS = """
import functools
import torch
import torch.onnx.symbolic_opset9 as opset9
torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
opset9._cast_Long = lambda g, x, non_blocking: g.op('Cast', x, to_i=7)
"""

SCRIPT = textwrap.dedent('''
    import json, sys
    import mmcv, numpy as np, onnx, onnxruntime as ort, torch
    if 'dynamo' in __import__('inspect').signature(
            torch.onnx.export).parameters:
        exec(SHIMS)
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.core import RewriterContext
    from mmdet.apis import init_detector
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    detector, deploy = sys.argv[1:3]
    torch.manual_seed(0)
    model = init_detector(detector, device='cpu')
    torch.save(dict(state_dict=model.state_dict(), meta={}), 'init.pth')
    image = np.random.RandomState(0).randint(0, 255, (96, 128, 3), np.uint8)
    mmcv.imwrite(image, 'image.png')
    torch2onnx('image.png', '.', 'end2end.onnx', deploy, detector,
               'init.pth', device='cpu')
    graph = onnx.load('end2end.onnx').graph
    report = dict(custom_ops=sorted({n.op_type for n in graph.node
                                     if n.domain not in ('', 'ai.onnx')}))
    deploy_cfg = Config.fromfile(deploy)
    processor = build_task_processor(Config.fromfile(detector), deploy_cfg,
                                     'cpu')
    pytorch = processor.build_pytorch_model('init.pth').eval()
    session = ort.InferenceSession('end2end.onnx',
                                   providers=['CPUExecutionProvider'])
    height, width = 160, 224  # not the export's 96x128
    x = torch.randn(1, 3, height, width,
                    generator=torch.Generator().manual_seed(1))
    shape = (height, width)
    sample = DetDataSample(metainfo=dict(
        img_shape=shape, pad_shape=shape, batch_input_shape=shape,
        ori_shape=shape, scale_factor=(1., 1.)))
    with torch.no_grad(), RewriterContext(
            cfg=deploy_cfg, backend='onnxruntime', opset=11):
        expected = [t.numpy() for t in pytorch(x, [sample], mode='predict')]
    got = session.run(None, {'input': x.numpy()})
    report['shapes'] = [list(g.shape) for g in got]
    report['expected_shapes'] = [list(e.shape) for e in expected]
    # detections in one order (near ties may swap places)
    order = lambda d: np.lexsort(np.round(d[0], 2).T[::-1])
    e, g = expected[0], got[0]
    report['dets'] = float(np.abs(e[0][order(e)] - g[0][order(g)]).max())
    report['labels_equal'] = bool(
        (np.sort(expected[1]) == np.sort(got[1])).all())
    report['masks'] = float(np.abs(expected[2] - got[2]).max())
    report['scores'] = [float(e[0][:, 4].min()), float(e[0][:, 4].max())]
    with open('report.json', 'w') as file:
        json.dump(report, file)
''').replace('exec(SHIMS)', f'exec({SHIMS!r})')


def test_mmdeploy_exports_mask_rcnn_for_onnx_runtime(tmp_path):
    (tmp_path / 'deploy.py').write_text(DEPLOY)
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT, DETECTOR,
         str(tmp_path / 'deploy.py')],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / 'report.json').read_text())
    print(f'MMDeploy Mask R-CNN (ParCNetV2-nano), ONNX Runtime against '
          f'PyTorch at 160x224: {report}')
    # plain ONNX operators only: no MMDeploy custom-op library needed
    assert report['custom_ops'] == []
    assert report['shapes'] == report['expected_shapes']
    assert report['shapes'][0][1] > 0  # detections
    assert report['dets'] < 1e-2  # pixels, on a 224-pixel-wide image
    assert report['labels_equal']
    assert report['masks'] < 1e-4
