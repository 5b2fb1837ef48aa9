import glob
import os.path as osp
import shutil

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmparcnet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def ship_configs():
    """Copy configs/ and model-index.yml into mmparcnet/.mim/, as the
    OpenMMLab toolboxes ship theirs, so that an installed package finds its
    configs (:mod:`mmparcnet.resources`; a checkout uses configs/ directly)
    and ``mim search mmparcnet`` its model index."""
    mim = osp.join(HERE, 'mmparcnet', '.mim')
    source = osp.join(HERE, 'configs')
    if osp.isdir(source):  # else: building from an sdist, copied already
        shutil.rmtree(mim, ignore_errors=True)
        shutil.copytree(
            source,
            osp.join(mim, 'configs'),
            ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copy(osp.join(HERE, 'model-index.yml'), mim)
    return [
        osp.relpath(path, osp.join(HERE, 'mmparcnet'))
        for pattern in ('*.py', '*.yml')
        for path in glob.glob(osp.join(mim, '**', pattern), recursive=True)
    ]


setup(
    name='mmparcnet',
    version=read_version(),
    description='ParCNetV2 (oversized kernels, bifurcate gate units) as an '
    'OpenMMLab 2.0 backbone for MMDetection, MMSegmentation and MMPretrain',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    # the range both ends of which CI tests (docs/environment.md)
    python_requires='>=3.8,<3.14',
    packages=find_packages(include=['mmparcnet', 'mmparcnet.*']),
    package_data={'mmparcnet': ship_configs()},
    # the model needs only these; mmdet / mmseg / mmpretrain are optional
    install_requires=[
        'torch>=2.1,<2.16', 'mmengine>=0.10.0,<0.11', 'numpy>=1.21,<3'
    ],
    extras_require={
        'det': ['mmcv>=2.0.0,<2.2.0', 'mmdet>=3.0.0'],
        'seg': ['mmcv>=2.0.0,<2.2.0', 'mmsegmentation>=1.0.0'],
        'cls': ['mmcv>=2.0.0,<2.2.0', 'mmpretrain>=1.0.0'],
        'tests': ['pytest', 'hypothesis'],
    },
    entry_points={
        'console_scripts': [
            'mmparcnet-convert=mmparcnet.tools.convert:main',
            'mmparcnet-demo=mmparcnet.tools.demo:main',
            'mmparcnet-benchmark=mmparcnet.tools.benchmark:main',
            'mmparcnet-complexity=mmparcnet.tools.complexity:main',
            'mmparcnet-erf=mmparcnet.tools.erf:main',
            'mmparcnet-infer=mmparcnet.tools.infer:main',
            'mmparcnet-compare-backbones='
            'mmparcnet.tools.compare_backbones:main',
        ],
    },
    zip_safe=False,
)
