"""The demo's helpers (the demo itself is `make demo`)."""
import os

from mmparcnet.tools.demo import newest_run_folder


def test_pictures_come_from_the_newest_run(tmp_path):
    # an older run listed first by the file system must not win
    for stamp in ('20261127_181916', '20261127_110246', '20261126_235959'):
        os.makedirs(tmp_path / stamp / 'predictions')
    os.makedirs(tmp_path / '20261128_000000')  # a run that showed nothing
    assert newest_run_folder(str(tmp_path), 'predictions') == str(
        tmp_path / '20261127_181916' / 'predictions')
    assert newest_run_folder(str(tmp_path / 'missing'), 'predictions') == ''
