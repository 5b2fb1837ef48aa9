#!/usr/bin/env bash
# The GPU measurement of README "Speed", prepared as one run for a machine
# that has PyTorch (and timm) but no OpenMMLab packages and no internet:
#
#   bash .ci/device-benchmark.sh fetch   # here: the wheels to carry, in .whl/
#   bash .ci/device-benchmark.sh run     # there, with .whl carried along
#
# `run` installs the wheels into /tmp/site, then writes into $OUT (default
# ./device-out): the benchmark's table and JSON (bench_gpu.txt/.json), the
# CUDA test cases (mixed precision, fast paths) in tests.txt, and last, cut
# off after COMPILE_SECONDS (default 200), ParCNetV2-T against ConvNeXt-T
# in bf16 through torch.compile (bench_gpu_compiled.txt/.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEELS=(mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 termcolor==3.3.0
        platformdirs==4.14.8)

case "${1:-}" in
fetch)
    python3 -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    ;;
run)
    out=${OUT:-$PWD/device-out}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
    python3 -m mmparcnet.tools.benchmark --json "$out/bench_gpu.json" \
        2>&1 | tee "$out/bench_gpu.txt"
    # failures are results too: go on to the compiled run
    python3 -m pytest tests/engine/test_amp.py \
        tests/models/test_oversized_conv_fast_paths.py 2>&1 \
        | tee "$out/tests.txt" || true
    compiled=$out/bench_gpu_compiled
    timeout "${COMPILE_SECONDS:-200}" python3 -m mmparcnet.tools.benchmark \
        --parts backbones --backbones ParCNetV2-T ConvNeXt-T --dtypes bf16 \
        --compile inductor --json "$compiled.json" > "$compiled.txt" 2>&1 \
        || echo "compiled run stopped: exit $?" | tee -a "$compiled.txt"
    ;;
*)
    echo "usage: $0 fetch|run" >&2
    exit 2
    ;;
esac
