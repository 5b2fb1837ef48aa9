"""A pytest plugin for runs that may be cut off (a device lease): each
test's outcome and duration, and each failure's traceback, are written the
moment the report arrives (``$OUT``, or the working directory), not in the
summary at the end.

    PYTHONPATH=.ci pytest -p pytest_stream_log ...
"""
import os

_config = None


def pytest_configure(config):
    global _config
    _config = config


def _write(name, text):
    with open(os.path.join(os.environ.get('OUT', '.'), name), 'a') as f:
        f.write(text)


def pytest_runtest_logreport(report):
    if hasattr(_config, 'workerinput'):  # xdist: the controller writes
        return
    if report.when == 'call' or report.outcome != 'passed':
        _write(
            'results.txt', f'{report.outcome:8} {report.when:8} '
            f'{report.duration:6.1f}s {report.nodeid}\n')
    if report.failed:
        _write(
            'failures.txt', f'\n===== {report.nodeid} ({report.when})\n'
            f'{report.longreprtext}\n')
