# The two commands a new user runs (see README.md). Both build .venv/ on the
# first run (mmcv is compiled once per machine and cached outside the clone)
# and reuse it afterwards.
.PHONY: env demo test

env:
	@bash .ci/setup-env.sh

demo: env
	.venv/bin/mmparcnet-demo

test: env
	.venv/bin/python -m pytest tests
