"""``model-index.yml`` and the metafiles list every config, and their
parameter and FLOP counts are what ``mmparcnet-complexity`` counts."""
import glob
import os.path as osp

import pytest
import yaml

from mmparcnet.tools import complexity

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def listed_models():
    with open(osp.join(REPO, 'model-index.yml')) as handle:
        index = yaml.safe_load(handle)
    models = []
    for metafile in index['Import']:
        with open(osp.join(REPO, metafile)) as handle:
            content = yaml.safe_load(handle)
        assert [c['Name'] for c in content['Collections']] == ['ParCNetV2']
        models += content['Models']
    return models


MODELS = {model['Config']: model for model in listed_models()}


def test_every_config_is_listed_and_every_listed_config_exists():
    configs = {
        osp.relpath(path, REPO)
        for path in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    }
    assert set(MODELS) == configs
    for config, model in MODELS.items():
        assert model['Name'] == osp.basename(config)[:-3]
        assert model['In Collection'] == 'ParCNetV2'


def test_paper_results_are_the_papers():
    # paper Tables 2, 4 and 5
    metrics = {
        (model['Name'], result['Task']): result['Metrics']
        for model in MODELS.values()
        for result in model['Results']
    }
    assert metrics[('parcnetv2-t_16xb128_in1k', 'Image Classification')] == {
        'Top 1 Accuracy': 83.5
    }
    assert metrics[('cascade-mask-rcnn_parcnetv2-t_fpn_4conv1fc-giou_amp-'
                    'ms-crop-3x_coco', 'Object Detection')] == {
                        'box AP': 52.6
                    }
    assert metrics[('upernet_parcnetv2-s_8xb2-amp-160k_ade20k-512x512',
                    'Semantic Segmentation')] == {
                        'mIoU': 51.0
                    }


# Counting every dense config takes minutes (Cascade at 1280x800 above all):
# parameters are checked for all, FLOPs for the configs that count in
# seconds, which share the counting code with the others.
CHEAP = {
    'configs/classification/parcnetv2-xt_16xb128_in1k.py',
    'configs/classification/parcnetv2-t_16xb128_in1k.py',
    'configs/classification/parcnetv2-nano_toy-shapes-64px.py',
    'configs/detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py',
}


@pytest.mark.requires('mmcv.ops', 'mmdet', 'mmseg', 'mmpretrain')
@pytest.mark.parametrize('config', sorted(MODELS))
def test_counts_agree_with_the_complexity_tool(config):
    import importlib

    from mmengine.config import Config

    from mmparcnet.analysis import count_parameters
    metadata = MODELS[config]['Metadata']
    path = osp.join(REPO, config)
    if config in CHEAP:
        row = complexity.config_row(path)
        params, flops = row['params_m'] * 1e6, row['macs_g'] * 1e9
        assert abs(metadata['FLOPs'] / flops - 1) < 1e-3
    else:
        family = config.split('/')[1]
        toolbox = {
            'detection': 'mmdet',
            'segmentation': 'mmseg',
            'classification': 'mmpretrain'
        }[family]
        importlib.import_module(f'{toolbox}.utils').register_all_modules()
        cfg = Config.fromfile(path)
        cfg.model.backbone.init_cfg = None
        cfg.model.pop('pretrained', None)
        params = count_parameters(
            importlib.import_module(f'{toolbox}.registry').MODELS.build(
                cfg.model))
    assert abs(metadata['Parameters'] / params - 1) < 1e-4
