"""``mmparcnet-erf``: effective receptive field heat maps.

The effective receptive field of a stage (RepLKNet's recipe): the gradient
of the centre pixel of the stage's output, summed over channels, with respect
to the input image, in absolute value, averaged over a few images, then
``log1p`` and normalised to [0, 1] for display.

Examples::

    # ParCNetV2-T in interpolate and fixed mode at 1024x1024, beside ConvNeXt-T
    mmparcnet-erf --models parcnetv2-interpolate parcnetv2-fixed convnext \\
        --size 1024 --stage 3 --out erf.png

    # with trained weights (any checkpoint the backbone loads)
    mmparcnet-erf --checkpoint parcnetv2_tiny.pth.tar --out erf.png
"""
import argparse
import sys
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

MODELS = ('parcnetv2-interpolate', 'parcnetv2-fixed', 'convnext')


def build(name: str, arch: str, stage: int, checkpoint: Optional[str]):
    if name.startswith('parcnetv2'):
        from mmparcnet.models import ParCNetV2
        mode = name.split('-', 1)[1]
        model = ParCNetV2(arch, kernel_mode=mode, out_indices=(stage, ))
        if checkpoint:
            from mmparcnet.checkpoint import load_pretrained
            load_pretrained(model, checkpoint)
        else:
            model.init_weights()
        return model
    try:
        from mmpretrain.models import ConvNeXt
    except ImportError as err:
        raise SystemExit(f'the ConvNeXt comparison needs mmpretrain ({err})')
    # layer scale 1.0 as in the detection configs: with the default 1e-6 a
    # randomly initialised ConvNeXt's blocks are near-identity, and its ERF
    # would only show the downsampling layers
    model = ConvNeXt(
        arch if arch in ('tiny', 'small', 'base') else 'tiny',
        out_indices=(stage, ),
        gap_before_final_norm=False,
        layer_scale_init_value=1.0)
    model.init_weights()
    return model


def effective_receptive_field(model: torch.nn.Module,
                              images: torch.Tensor) -> np.ndarray:
    """Mean |d centre output / d input| over ``images`` (N, 3, H, W).

    The centre output is the sum of the ReLU of the feature vector there,
    as RepLKNet measures it: the plain channel sum of a channel-normalised
    feature is constant (zero mean over channels) wherever the norm's scale
    is uniform, as in an untrained model, and has no gradient."""
    model.eval()
    total = torch.zeros(images.shape[-2:])
    for image in images:
        x = image[None].clone().requires_grad_(True)
        feature = model(x)[-1]
        h, w = feature.shape[-2:]
        F.relu(feature[0, :, h // 2, w // 2]).sum().backward()
        total += x.grad[0].abs().sum(0)
    return (total / len(images)).numpy()


def covering_fraction(erf: np.ndarray, share: float = 0.9) -> float:
    """Side of the smallest centred square holding ``share`` of the ERF's
    mass, as a fraction of the image side (RepLKNet's area-ratio idea)."""
    height, width = erf.shape
    cy, cx = height // 2, width // 2
    total = erf.sum()
    for radius in range(max(height, width)):
        window = erf[max(cy - radius, 0):cy + radius + 1,
                     max(cx - radius, 0):cx + radius + 1]
        if window.sum() >= share * total:
            return min(1., (2 * radius + 1) / max(height, width))
    return 1.


def normalise(erf: np.ndarray) -> np.ndarray:
    erf = np.log1p(erf / max(erf.max(), 1e-30) * 1e4)
    return (erf - erf.min()) / max(erf.max() - erf.min(), 1e-30)


TITLE_HEIGHT = 28


def draw(maps: Dict[str, np.ndarray], out: str, panel: int) -> None:
    """One ``panel`` x ``panel`` heat map per model, side by side, under a
    title band of :data:`TITLE_HEIGHT` pixels."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw
    canvas = Image.new('RGB', (panel * len(maps), panel + TITLE_HEIGHT),
                       (255, 255, 255))
    text = ImageDraw.Draw(canvas)
    colormap = colormaps['magma']
    for index, (title, values) in enumerate(maps.items()):
        rgb = (colormap(values)[..., :3] * 255).astype(np.uint8)
        heat = Image.fromarray(rgb).resize((panel, panel), Image.BILINEAR)
        canvas.paste(heat, (index * panel, TITLE_HEIGHT))
        for line, row in zip(title.split('\n'), (1, 14)):
            text.text((index * panel + 4, row), line, fill=(0, 0, 0))
    canvas.save(out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-erf', description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--models',
        nargs='+',
        choices=MODELS,
        default=['parcnetv2-interpolate', 'parcnetv2-fixed'])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--stage', type=int, default=3)
    parser.add_argument(
        '--size', type=int, default=512, help='input height and width')
    parser.add_argument(
        '--images', type=int, default=4, help='random images to average over')
    parser.add_argument(
        '--checkpoint', default=None, help='weights for the ParCNetV2 models')
    parser.add_argument(
        '--panel-size',
        type=int,
        default=320,
        help='side of each heat map in the PNG, in pixels')
    parser.add_argument('--out', default='erf.png')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    images = torch.randn(args.images, 3, args.size, args.size)
    maps = {}
    for name in args.models:
        model = build(name, args.arch, args.stage, args.checkpoint)
        erf = effective_receptive_field(model, images)
        side = covering_fraction(erf)
        title = (f'{name}, {args.arch}, stage {args.stage}, {args.size} px\n'
                 f'90% of the gradient within {side:.0%} of the side')
        maps[title] = normalise(erf)
        print(f'{name}: 90% of the gradient mass within a centred square '
              f'of {side:.1%} of the image side')
    draw(maps, args.out, args.panel_size)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
