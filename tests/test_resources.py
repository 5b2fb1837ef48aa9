"""Configs are found from a checkout and from an installed package."""
import os.path as osp
import shutil

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
