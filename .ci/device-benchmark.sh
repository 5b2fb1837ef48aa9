#!/usr/bin/env bash
# The GPU measurement of README "Speed", prepared as one run for a machine
# that has PyTorch (and timm) but no OpenMMLab packages and no internet:
#
#   bash .ci/device-benchmark.sh fetch   # here: the wheels to carry, in .whl/
#   bash .ci/device-benchmark.sh run     # there, with .whl carried along
#
# `run` installs the wheels into /tmp/site (when .whl/ is there), then
# writes into $OUT (default ./device-out), each step cut off after its
# budget of seconds so that the whole run fits a machine lent for minutes:
#   tests.txt             the model tests there, CUDA and Triton cases included
#   results.txt, failures.txt  each test's outcome, each failure's traceback
#   bench_gpu.txt/.json   the benchmark at the detection shape (and
#                         nvidia-smi's line for the GPU): ParCNetV2-T
#                         (automatic paths, with the opt-in Triton kernels,
#                         and with the opt-in channels-last 7x7
#                         convolution) against ConvNeXt-T, fp32 and bf16 (with
#                         CONV=1 also the oversized convolution's paths at
#                         the four stage shapes)
#   bench_gpu_pretrain.json  the same backbones at the pretraining shape
#                         (PRETRAIN_SIZE, default 224 224; PRETRAIN_BATCH,
#                         default 128); the oversized convolution's paths
#                         at its stage shapes and batch go into the text
#   compiled.json         ParCNetV2-T against ConvNeXt-T compiled block by
#                         block (inductor, dynamic sizes), bf16, at both
#                         shapes, with the seconds that compiling took
#                         (.ci/device-compiled.py; COMPILE_SECONDS=0
#                         leaves it out)
#                         (the text of these two goes to bench_gpu.txt too:
#                         a run brings back eight files at most)
#   profile.txt           where the bf16 training step spends its time
# SIZE="H W" changes the detection input (default 800 1216); PYTHON the
# interpreter.
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
    py=${PYTHON:-python3}
    size=(${SIZE:-800 1216})
    pretrain=(${PRETRAIN_SIZE:-224 224})
    pretrain_batch=${PRETRAIN_BATCH:-128}
    backbones=(ParCNetV2-T 'ParCNetV2-T (Triton)' 'ParCNetV2-T (cuDNN 7x7)'
               ConvNeXt-T)
    mkdir -p "$out"
    export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
    if [ -d .whl ]; then
        "$py" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    fi
    # (the GPU's line goes to the end of bench_gpu.txt: a run brings back
    # eight files at most)
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv 2>&1 || true)
    echo "$gpu"
    # the model tests first, CUDA and Triton cases included: 8 processes of
    # 2 threads each (16 threads each oversubscribed 16 cores); each outcome
    # and failure is written as it arrives (.ci/pytest_stream_log.py), so a
    # cut-off run still tells which tests failed and why
    workers=()
    if "$py" -c 'import xdist' 2>/dev/null; then workers=(-n 8); fi
    OMP_NUM_THREADS=2 OUT=$out PYTHONPATH=$PYTHONPATH:$PWD/.ci \
        timeout "${TEST_SECONDS:-90}" "$py" -m pytest tests/models \
        -o addopts= -p no:cacheprovider -p pytest_stream_log -rs \
        ${workers[@]+"${workers[@]}"} \
        > "$out/tests.txt" 2>&1 \
        || echo "tests stopped: exit $?" | tee -a "$out/tests.txt"
    tail -3 "$out/tests.txt"
    # every step runs: a failure or a cut-off is a result too. Detection
    # shape (batch 2), then the pretraining shape (224x224, batch 128 a GPU)
    parts=(backbones)
    if [ "${CONV:-0}" = 1 ]; then parts=(conv backbones); fi
    timeout "${BENCH_SECONDS:-100}" "$py" -m mmparcnet.tools.benchmark \
        --size "${size[@]}" --warmup 5 --repeats 15 --parts "${parts[@]}" \
        --backbones "${backbones[@]}" \
        --json "$out/bench_gpu.json" > "$out/bench_gpu.txt" 2>&1 \
        || echo "benchmark stopped: exit $?" | tee -a "$out/bench_gpu.txt"
    echo "$gpu" >> "$out/bench_gpu.txt"
    timeout "${PRETRAIN_SECONDS:-100}" "$py" -m mmparcnet.tools.benchmark \
        --size "${pretrain[@]}" --backbone-batch "$pretrain_batch" \
        --warmup 3 --repeats 10 --parts backbones \
        --backbones "${backbones[@]}" \
        --json "$out/bench_gpu_pretrain.json" \
        >> "$out/bench_gpu.txt" 2>&1 \
        || echo "benchmark stopped: exit $?" | tee -a "$out/bench_gpu.txt"
    # the oversized convolution's paths at the four stage shapes of the
    # pretraining shape and batch (where the matmul path starts to pay,
    # FAST_PATHS, was measured at batch 2); its JSON goes into the text
    timeout "${CONV_SECONDS:-40}" "$py" -m mmparcnet.tools.benchmark \
        --size "${pretrain[@]}" --conv-batch "$pretrain_batch" \
        --warmup 3 --repeats 10 --parts conv >> "$out/bench_gpu.txt" 2>&1 \
        || echo "benchmark stopped: exit $?" | tee -a "$out/bench_gpu.txt"
    # compiled block by block (compiling whole backbones for bf16 training
    # took more than 190 s on an H200), both shapes in one process: the
    # second reuses the first one's dynamic graphs
    if [ "${COMPILE_SECONDS:-200}" -gt 0 ]; then
        timeout "${COMPILE_SECONDS:-200}" "$py" .ci/device-compiled.py \
            "$out/compiled.json" "${size[@]}" 2 "${pretrain[@]}" \
            "$pretrain_batch" >> "$out/bench_gpu.txt" 2>&1 \
            || echo "compiled run stopped: exit $?" \
            | tee -a "$out/bench_gpu.txt"
    fi
    timeout "${PROFILE_SECONDS:-40}" "$py" .ci/device-profile.py \
        "${size[@]}" > "$out/profile.txt" 2>&1 \
        || echo "profile stopped: exit $?" | tee -a "$out/profile.txt"
    grep -v '^ \|^[{}]\|^JSON' "$out/bench_gpu.txt"
    ;;
*)
    echo "usage: $0 fetch|run" >&2
    exit 2
    ;;
esac
