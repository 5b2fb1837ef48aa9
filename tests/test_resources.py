"""Configs are found from a checkout and from an installed package."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from mmparcnet import resources

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY = 'detection/mask-rcnn_parcnetv2-nano_fpn_toy-coco.py'


def test_a_checkout_uses_its_configs_folder():
    assert resources.config_path(TOY) == osp.join(REPO, 'configs', TOY)


def test_an_installed_package_uses_its_copy(tmp_path, monkeypatch):
    # as setup.py lays it out: mmparcnet/.mim/configs, no configs/ beside
    shipped = tmp_path / 'site-packages' / 'mmparcnet' / '.mim' / 'configs'
    shutil.copytree(osp.join(REPO, 'configs'), str(shipped))
    monkeypatch.setattr(
        resources, 'CANDIDATES',
        (str(tmp_path / 'site-packages' / 'configs'), str(shipped)))
    assert resources.config_path(TOY) == str(shipped / TOY)


def test_missing_configs_are_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no config 'detection/x.py'"):
        resources.config_path('detection/x.py')
    monkeypatch.setattr(resources, 'CANDIDATES', (str(tmp_path), ))
    with pytest.raises(FileNotFoundError, match='reinstall the package'):
        resources.config_path(TOY)


def copy_of_the_sources(target):
    """What a wheel is built from, without the checkout's build outputs."""
    for name in ('setup.py', 'README.md', 'model-index.yml'):
        shutil.copy(osp.join(REPO, name), str(target))
    ignore = shutil.ignore_patterns('__pycache__', '.mim', '*.egg-info')
    for name in ('configs', 'mmparcnet'):
        shutil.copytree(
            osp.join(REPO, name), str(target / name), ignore=ignore)


@pytest.mark.requires('mim')
def test_mim_search_finds_the_model_index_of_an_installed_wheel(tmp_path):
    # a regular (not editable) install, in a target folder ahead of the
    # checkout's editable one on the path
    source, wheels, site = (
        tmp_path / name for name in ('source', 'wheels', 'site'))
    source.mkdir()
    copy_of_the_sources(source)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(
        pip + [
            'wheel', '--no-deps', '--no-build-isolation', '-w',
            str(wheels),
            str(source)
        ],
        check=True)
    wheel, = wheels.glob('mmparcnet-*.whl')
    subprocess.run(
        pip +
        ['install', '--no-deps', '--target',
         str(site), str(wheel)],
        check=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([
        sys.executable, '-c', 'from mim.utils import get_installed_path;'
        'print(get_installed_path("mmparcnet"))'
    ],
                           env=env,
                           cwd=str(tmp_path),
                           capture_output=True,
                           text=True,
                           check=True).stdout.strip()
    assert where == str(site / 'mmparcnet')
    found = subprocess.run(
        [sys.executable, '-m', 'mim', 'search', 'mmparcnet'],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True)
    assert found.returncode == 0, found.stdout + found.stderr
    # mim imports pkg_resources; setuptools >= 80.9 warns on every import
    assert 'pkg_resources is deprecated' not in found.stderr, found.stderr
    for config in ('mask-rcnn_parcnetv2-t_fpn_amp-ms-crop-3x_coco',
                   'upernet_parcnetv2-t_8xb2-amp-160k_ade20k-512x512',
                   'parcnetv2-t_16xb128_in1k'):
        assert config in found.stdout
