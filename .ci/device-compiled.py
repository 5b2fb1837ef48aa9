"""ParCNetV2-T against ConvNeXt-T compiled block by block, at several shapes
in one process, into one JSON list.

Run by ``.ci/device-benchmark.sh`` on the device::

    python .ci/device-compiled.py OUT.json H W BATCH [H W BATCH ...]

One process, so that the later shapes reuse the graphs compiled for the
first (dynamic sizes): the first shape's first calls report what compiling
costs, the later ones what a new input size costs.
"""
import json
import os
import sys
import tempfile

from mmparcnet.tools import benchmark


def main(out, *shapes):
    results = []
    # each part outside $OUT, which brings back eight files at most
    path = os.path.join(tempfile.mkdtemp(), 'part.json')
    for start in range(0, len(shapes), 3):
        height, width, batch = shapes[start:start + 3]
        benchmark.main([
            '--size', height, width, '--backbone-batch', batch, '--parts',
            'backbones', '--backbones', 'ParCNetV2-T', 'ConvNeXt-T',
            '--dtypes', 'bf16', '--warmup', '3', '--repeats', '10',
            '--compile', 'inductor', '--compile-scope', 'blocks', '--json',
            path
        ])
        with open(path) as f:
            results.append(json.load(f))
        os.remove(path)
        with open(out, 'w') as f:  # what is done stays if a later one stops
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main(*sys.argv[1:])
