"""Small datasets in the real on-disk formats, drawn on the fly.

Each image shows a few filled shapes on a noisy background; the shape is the
class (``square``, ``disc``, ``triangle``). The formats are the ones the
toolboxes' own dataset classes read, so the standard configs and tools run on
them unchanged:

- COCO instances (``annotations/instances_{train,val}2017.json`` with boxes
  and polygon masks, images in ``train2017/`` and ``val2017/``);
- ADE20K (``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
  ``annotations/.../*.png``, label 0 = "other", class k = k + 1);
- ImageNet (``train/<class>/*.JPEG``, ``val/*.JPEG``,
  ``meta/{train,val}.txt``).

Image sizes vary from image to image, so successive training iterations see
different input sizes. Everything is seeded: the same call writes the same
files.
"""
import json
import math
import os
import os.path as osp
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('square', 'disc', 'triangle')
COLORS = ((230, 60, 50), (60, 200, 80), (70, 90, 235))
DEFAULT_SIZES = ((96, 128), (128, 96), (112, 112), (128, 160), (160, 128))


def _shape_polygon(kind: int, cx: float, cy: float, r: float) -> List[float]:
    if kind == 0:  # square
        points = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r),
                  (cx - r, cy + r)]
    elif kind == 1:  # disc, as a 24-gon
        points = [(cx + r * math.cos(2 * math.pi * i / 24),
                   cy + r * math.sin(2 * math.pi * i / 24)) for i in range(24)]
    else:  # triangle, pointing up
        points = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [coordinate for point in points for coordinate in point]


def draw_scene(rng: np.random.Generator,
               height: int,
               width: int,
               max_objects: int = 3,
               kind: int = None):
    """One image and its objects: a list of (class index, polygon, box).

    ``kind`` fixes the class of every object (random by default).
    """
    background = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    objects = []
    occupied = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            r = float(rng.uniform(0.1, 0.22) * min(height, width))
            cx = float(rng.uniform(r + 1, width - r - 1))
            cy = float(rng.uniform(r + 1, height - r - 1))
            if all((cx - x)**2 + (cy - y)**2 > (r + q + 2)**2
                   for x, y, q in occupied):
                break
        else:
            continue
        occupied.append((cx, cy, r))
        this_kind = int(rng.integers(0, len(CLASSES))) if kind is None \
            else kind
        polygon = _shape_polygon(this_kind, cx, cy, r)
        jitter = rng.integers(-25, 26, size=3)
        color = tuple(
            int(np.clip(c + j, 0, 255))
            for c, j in zip(COLORS[this_kind], jitter))
        draw.polygon(polygon, fill=color)
        xs, ys = polygon[0::2], polygon[1::2]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        objects.append((this_kind, polygon, box))
    return image, objects


def _sizes(sizes: Sequence[Tuple[int, int]], index: int) -> Tuple[int, int]:
    return tuple(sizes[index % len(sizes)])


def make_coco(root: str,
              num_train: int = 48,
              num_val: int = 16,
              sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES,
              seed: int = 0) -> dict:
    """Write a COCO-format instance segmentation set under ``root``.

    Returns:
        dict: ``classes`` and the paths written.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    paths = {}
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            height, width = _sizes(sizes, index)
            image, objects = draw_scene(rng, height, width)
            name = f'{index:06d}.jpg'
            image.save(osp.join(root, split, name), quality=95)
            images.append(
                dict(id=index + 1, file_name=name, height=height, width=width))
            for kind, polygon, box in objects:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=index + 1,
                        category_id=kind + 1,
                        segmentation=[[round(v, 2) for v in polygon]],
                        area=float(_polygon_area(polygon)),
                        bbox=[round(v, 2) for v in box],
                        iscrowd=0))
        categories = [
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES)
        ]
        path = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(path, 'w') as file:
            json.dump(
                dict(
                    images=images,
                    annotations=annotations,
                    categories=categories), file)
        paths[split] = path
    return dict(classes=CLASSES, **paths)


def _polygon_area(polygon: Sequence[float]) -> float:
    xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
    return 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))


def make_ade20k(root: str,
                num_train: int = 32,
                num_val: int = 8,
                sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES,
                seed: int = 0) -> dict:
    """Write an ADE20K-format semantic segmentation set under ``root``
    (``root/ADEChallengeData2016/...``). Label 0 is "other" (ignored with
    ``reduce_zero_label``), shape class k is label k + 1."""
    rng = np.random.default_rng(seed)
    base = osp.join(root, 'ADEChallengeData2016')
    for split, count in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(base, 'images', split), exist_ok=True)
        os.makedirs(osp.join(base, 'annotations', split), exist_ok=True)
        for index in range(count):
            height, width = _sizes(sizes, index)
            image, objects = draw_scene(rng, height, width)
            label = Image.new('L', (width, height), 0)
            draw = ImageDraw.Draw(label)
            for kind, polygon, _ in objects:
                draw.polygon(polygon, fill=kind + 1)
            name = f'ADE_{split[:5]}_{index:08d}'
            image.save(
                osp.join(base, 'images', split, name + '.jpg'), quality=95)
            label.save(osp.join(base, 'annotations', split, name + '.png'))
    return dict(classes=CLASSES, root=base)


def make_imagenet(root: str,
                  per_class_train: int = 16,
                  per_class_val: int = 4,
                  sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES,
                  seed: int = 0) -> dict:
    """Write an ImageNet-format classification set under ``root``: one shape
    per image, its class the label."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, per_class in (('train', per_class_train), ('val',
                                                          per_class_val)):
        lines = []
        for label, name in enumerate(CLASSES):
            for index in range(per_class):
                height, width = _sizes(sizes, index + label)
                image, _ = draw_scene(rng, height, width, 1, kind=label)
                file = f'{name}_{index:05d}.JPEG'
                if split == 'train':
                    os.makedirs(osp.join(root, split, name), exist_ok=True)
                    relative = f'{name}/{file}'
                else:
                    os.makedirs(osp.join(root, split), exist_ok=True)
                    relative = file
                image.save(osp.join(root, split, relative), quality=95)
                lines.append(f'{relative} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
    return dict(classes=CLASSES, root=root)
