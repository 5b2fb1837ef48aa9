import functools
import importlib
import os
import os.path as osp

import pytest
import torch

# tensors from the published reference implementation (tests/data/README.md)
FIXTURE = osp.join(
    osp.dirname(osp.abspath(__file__)), 'data',
    'official_parcnetv2_small_random.pt')


@pytest.fixture(scope='session')
def reference():
    """Tensors from the published reference implementation (trusted test
    data holding an argparse.Namespace, hence weights_only=False)."""
    return torch.load(FIXTURE, weights_only=False)


@pytest.fixture(scope='session')
def reference_arch(reference):
    config = reference['config']
    return dict(depths=config['depths'], dims=config['dims'])


@pytest.fixture
def published_checkpoint(reference, tmp_path):
    """The reference classifier checkpoint as a timm-style .pth.tar file."""
    path = tmp_path / 'parcnetv2_custom.pth.tar'
    torch.save(reference['official_cls_checkpoint'], path)
    return str(path)


class _LogText:

    def __init__(self, stream):
        self._stream = stream

    @property
    def text(self):
        return self._stream.getvalue()


@pytest.fixture
def mmengine_log():
    """What mmengine's current logger prints (it does not propagate to the
    root logger, so pytest's caplog does not see it)."""
    import io
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield _LogText(stream)
    logger.removeHandler(handler)


@functools.lru_cache(maxsize=None)
def _missing(module: str):
    """Why ``module`` cannot be imported here, or None if it can."""
    try:
        importlib.import_module(module)
    except Exception as error:  # ImportError, or a broken build (mmcv ops)
        return f'{type(error).__name__}: {error}'
    return None


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'requires(*modules): skip unless every module imports '
        '(e.g. "mmdet", "mmcv.ops"); the one way tests say they need an '
        'OpenMMLab toolbox, so that a torch + mmengine environment runs the '
        'rest')


def pytest_runtest_setup(item):
    # the pinned stack has every toolbox: there a missing one (a broken mmcv
    # build, say) is a failure, not a skip
    strict = os.environ.get('MMPARCNET_REQUIRE_ALL') == '1'
    for marker in item.iter_markers('requires'):
        for module in marker.args:
            reason = _missing(module)
            if reason is not None:
                (pytest.fail
                 if strict else pytest.skip)(f'needs {module} ({reason})')
