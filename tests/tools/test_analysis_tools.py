"""The complexity report, the ERF command and the picture command."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmparcnet.analysis import REFERENCE_CLASSIFIERS
from mmparcnet.tools import complexity, erf, infer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPEC = REFERENCE_CLASSIFIERS


def test_complexity_of_the_four_archs_matches_the_spec():
    rows = complexity.classifier_rows(['interpolate'])
    assert [r['model'] for r in rows] == [f'classifier {a}' for a in SPEC]
    for row, (params, macs) in zip(rows, SPEC.values()):
        assert abs(row['params_m'] / params - 1) < 0.05
        assert abs(row['macs_g'] / macs - 1) < 0.05


@pytest.mark.requires('mmcv.ops', 'mmdet')
def test_complexity_counts_the_kernel_length_really_used():
    # at 224 both modes use the stored kernels; at 1280x800 interpolation
    # makes the oversized kernels longer, and costlier
    config = osp.join(REPO, 'configs', 'detection',
                      'mask-rcnn_parcnetv2-nano_fpn_toy-coco.py')
    fixed = complexity.dense_row(config, 'fixed')
    interpolated = complexity.dense_row(config, 'interpolate')
    assert fixed['params_m'] == interpolated['params_m']
    assert interpolated['macs_g'] > fixed['macs_g'] > 0
    assert interpolated['input'] == '1280x800'


def test_erf_writes_a_png_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / 'erf.png'
    assert erf.main([
        '--arch', 'xt', '--size', '96', '--images', '2', '--stage', '2',
        '--panel-size', '120', '--out',
        str(out)
    ]) == 0
    image = np.asarray(Image.open(out))
    # two panels (interpolate, fixed) of 120 px under the title band
    assert image.shape == (120 + erf.TITLE_HEIGHT, 240, 3)
    heat = image[erf.TITLE_HEIGHT:]
    assert np.isfinite(heat).all() and heat.std() > 5
    assert '90% of the gradient mass' in capsys.readouterr().out


def test_erf_values_are_finite_and_centred():
    from mmparcnet.models import ParCNetV2
    torch.manual_seed(0)
    model = ParCNetV2('xt', out_indices=(1, ))
    model.init_weights()
    values = erf.effective_receptive_field(model, torch.randn(2, 3, 64, 64))
    assert np.isfinite(values).all() and values.std() > 0
    peak = np.unravel_index(values.argmax(), values.shape)
    assert abs(peak[0] - 32) < 12 and abs(peak[1] - 32) < 12
    assert 0 < erf.covering_fraction(values) <= 1


def test_interpolated_kernels_see_further_at_large_inputs():
    # the picture that shows why interpolation matters, as numbers: at 4x the
    # pretraining size, fixed kernels cover a quarter of the last stage's
    # map, interpolated ones all of it
    from mmparcnet.models import ParCNetV2
    images = torch.randn(1, 3, 256, 256)
    sides = {}
    for mode in ('interpolate', 'fixed'):
        torch.manual_seed(0)
        model = ParCNetV2(
            dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32]),
            kernel_mode=mode,
            pretrain_size=64,
            out_indices=(3, ))
        model.init_weights()
        sides[mode] = erf.covering_fraction(
            erf.effective_receptive_field(model, images), share=0.99)
    assert sides['interpolate'] > sides['fixed']


@pytest.mark.requires('mmcv.ops', 'mmdet')
def test_infer_draws_predictions(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint

    from mmparcnet.datasets import make_coco
    make_coco(str(tmp_path / 'coco'), num_train=1, num_val=2)
    config = osp.join(REPO, 'configs', 'detection',
                      'mask-rcnn_parcnetv2-nano_fpn_toy-coco.py')
    register_all_modules()
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    checkpoint = str(tmp_path / 'detector.pth')
    save_checkpoint(model.state_dict(), checkpoint)
    image = str(tmp_path / 'coco' / 'val2017' / '000000.jpg')
    written = infer.infer(
        config, checkpoint, [image], str(tmp_path / 'out'), score_thr=0.)
    assert written
    picture = np.asarray(Image.open(written[0]))
    assert picture.shape[:2] == np.asarray(Image.open(image)).shape[:2]
    assert picture.std() > 0


def test_toolbox_get_flops_counts_the_toeplitz_products_without_padding():
    # MMPretrain's get_flops gives 4.187 G for ParCNetV2-T at 224, the
    # README (and the paper) 4.29 G: the same counter (mmengine's
    # FlopAnalyzer), on two computations. The paper counts the direct
    # oversized convolution, 2H-1 (2W-1) taps per output, most of them on
    # zero padding; the Toeplitz GEMM the default model runs on small maps
    # multiplies only the H (W) taps that meet the map. So per oversized
    # convolution of C channels on an H x W map the two counts differ by
    # C*H*W*(H-1) vertically and C*H*W*(W-1) horizontally, by hand:
    from mmparcnet.analysis import count_macs
    from mmparcnet.models.classifier import ParCNetV2Classifier
    from mmparcnet.models.layers.geometry import stage_map_sizes
    counted = {
        impl:
        count_macs(
            ParCNetV2Classifier('xt', oversized_conv_impl=impl),
            (1, 3, 224, 224))
        for impl in ('direct', 'matmul')
    }
    model = ParCNetV2Classifier('xt').backbone
    padding_products = 0
    for stage, size in zip(model.stages, stage_map_sizes(224)):
        for block in stage:
            channels = block.token_mixer.dwconv1.conv_h.weight.shape[0]
            padding_products += channels * size * size * 2 * (size - 1)
    assert counted['direct'] - counted['matmul'] == padding_products
    # the default picks the Toeplitz form by map size: in between
    default = count_macs(ParCNetV2Classifier('xt'), (1, 3, 224, 224))
    assert counted['matmul'] <= default <= counted['direct']
