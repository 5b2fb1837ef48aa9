import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmparcnet', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmparcnet',
    version=read_version(),
    description='ParCNetV2 (oversized kernels, bifurcate gate units) as an '
    'OpenMMLab 2.0 backbone for MMDetection, MMSegmentation and MMPretrain',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    packages=find_packages(include=['mmparcnet', 'mmparcnet.*']),
    # the model needs only these; mmdet / mmseg / mmpretrain are optional
    install_requires=['torch>=1.13', 'mmengine>=0.10.0', 'numpy'],
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
