"""``mmparcnet-convert``: published ParCNetV2 checkpoints to OpenMMLab ones.

Examples::

    # a published classifier -> mmpretrain `load_from`, or dense configs with
    # init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')
    mmparcnet-convert parcnetv2_tiny.pth.tar parcnetv2_tiny_openmmlab.pth

    # an mmengine checkpoint written without mmparcnet imported, whose
    # HistoryBuffers need builtins.getattr: re-save it once so that it
    # loads with weights_only=True (runs the old file's pickle: trust it)
    mmparcnet-convert --resave --trust-source epoch_12.pth epoch_12_safe.pth

    # a training checkpoint for release (what the toolboxes'
    # publish_model.py does, which torch >= 2.6 stops at its torch.load):
    # meta and state_dict only, as parcnetv2-t_mask-rcnn-<sha256[:8]>.pth
    mmparcnet-convert --publish epoch_36.pth parcnetv2-t_mask-rcnn.pth
"""
import argparse
import sys

from mmparcnet.checkpoint.convert import (convert_checkpoint,
                                          publish_checkpoint,
                                          resave_checkpoint)
from mmparcnet.checkpoint.safe_io import CheckpointError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmparcnet-convert',
        description='Convert a published ParCNetV2 checkpoint (timm-style '
        'classifier or reference dense backbone) into an OpenMMLab '
        'checkpoint (backbone.*, head.fc.*).')
    parser.add_argument('src', help='checkpoint to read')
    parser.add_argument('dst', help='file to write')
    parser.add_argument(
        '--force', action='store_true', help='replace dst if it exists')
    parser.add_argument(
        '--ema', action='store_true', help='convert state_dict_ema')
    parser.add_argument(
        '--prefix',
        default=None,
        help='take only keys under this prefix of src (e.g. backbone.)')
    parser.add_argument(
        '--resave',
        action='store_true',
        help='write src again unchanged, so that it loads with '
        'weights_only=True (for mmengine checkpoints)')
    parser.add_argument(
        '--publish',
        action='store_true',
        help='write the meta and state_dict of a training checkpoint as '
        'DST without .pth, a dash, the first 8 digits of its sha256 and '
        '.pth (as the toolboxes\' publish_model.py)')
    parser.add_argument(
        '--trust-source',
        action='store_true',
        help='with --resave or --publish: allow reading src with '
        'weights_only=False (this runs code in src; only for files you '
        'trust)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmparcnet  # noqa: F401  (safe HistoryBuffer pickling for --resave)
    try:
        if args.resave and args.publish:
            raise CheckpointError('--resave and --publish exclude each '
                                  'other: choose one')
        if args.publish:
            final = publish_checkpoint(args.src, args.dst, args.force,
                                       args.trust_source)
            print(f'wrote {final} (meta and state_dict; loads with a plain '
                  f'torch.load)')
            return 0
        if args.resave:
            resave_checkpoint(args.src, args.dst, args.force,
                              args.trust_source)
            print(f'wrote {args.dst} (loads with weights_only=True)')
            return 0
        meta = convert_checkpoint(args.src, args.dst, args.force, args.ema,
                                  args.prefix)['mmparcnet']
    except (CheckpointError, FileNotFoundError, FileExistsError) as err:
        print(f'mmparcnet-convert: error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.dst}: {meta["source_layout"]} layout, depths '
          f'{meta["depths"]}, dims {meta["dims"]}, kernel lengths '
          f'{meta["kernel_lengths"]}; verified by reading it back')
    return 0


if __name__ == '__main__':
    sys.exit(main())
