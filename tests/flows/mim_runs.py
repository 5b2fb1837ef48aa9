"""``mim`` as the flow tests run it: the venv's own, with the flow hooks
(flow_hooks.py, beside this file) importable by the jobs."""
import os
import os.path as osp
import subprocess
import sys

MIM = osp.join(osp.dirname(sys.executable), 'mim')
HERE = osp.dirname(osp.abspath(__file__))


def mim(args, cwd, check=True):
    """``mim ARGS`` in ``cwd``: its output, after asserting that it
    succeeded; with ``check=False``, its exit status and output."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        PYTHONPATH=HERE + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run(
        [MIM] + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=900)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, output[-5000:]
        return output
    return result.returncode, output
