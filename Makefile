# The two commands a new user runs (see README.md). Both build what they need
# on the first run and reuse it afterwards: .venv/ (the pinned stack; mmcv is
# compiled once per machine and cached outside the clone) and, for the tests,
# .venv-torch2.1-core/ (the old end of the supported range: Python 3.8,
# PyTorch 2.1.2, numpy 1.24, no mmcv; the toolbox tests skip there) and
# .venv-torch2.15-core/ (the new end: Python 3.13, PyTorch 2.15, no mmcv).
.PHONY: env env-old-end env-new-end demo lint test test-pinned test-old-end \
	test-new-end

OLD_END_PINS = requirements-torch2.1.txt
NEW_END_PINS = requirements-torch2.15.txt

env:
	@bash .ci/setup-env.sh

env-old-end:
	@MMPARCNET_TOOLBOXES=0 bash .ci/setup-env.sh $(OLD_END_PINS)

env-new-end:
	@MMPARCNET_TOOLBOXES=0 bash .ci/setup-env.sh $(NEW_END_PINS)

demo: env
	.venv/bin/mmparcnet-demo

# the three venvs first: a machine short of disk space stops within minutes,
# not after the pinned stack's tests
test: env env-old-end env-new-end lint test-pinned test-old-end test-new-end

# flake8, isort, yapf and codespell with the settings in setup.cfg (what
# .pre-commit-config.yaml runs)
lint: env
	.venv/bin/flake8 .
	.venv/bin/isort --check-only --diff .
	.venv/bin/yapf --recursive --diff mmparcnet tests configs setup.py
	.venv/bin/codespell .

# every toolbox is there: a test that would skip for a missing one fails
test-pinned: env
	MMPARCNET_REQUIRE_ALL=1 .venv/bin/python -m pytest tests

test-old-end: env-old-end
	.venv-torch2.1-core/bin/python -m pytest tests

test-new-end: env-new-end
	.venv-torch2.15-core/bin/python -m pytest tests
