#!/usr/bin/env bash
# Build (or reuse) a virtual environment from a pin file.
#
#   bash .ci/setup-env.sh                          # .venv from requirements.txt
#   bash .ci/setup-env.sh requirements-torch2.1.txt   # .venv-torch2.1, the old end
#
# Versions come from the pin file alone; its `# python: X.Y` line names the
# interpreter. mmcv 2.1.0 has no wheels on PyPI, so it is compiled once with
# its ops (nms, RoIAlign, ...) and the wheel is kept in a cache outside the
# clone, keyed by the Python and torch versions, so that later clones and CI
# runs only install it. Re-running this script is cheap: a stamp of the pin
# file + this script + the options says whether the venv is up to date.
#
# Environment:
#   MMPARCNET_CACHE      where compiled mmcv wheels live (default ~/.cache/mmparcnet)
#   MMPARCNET_TOOLBOXES  0: torch, mmengine and the test tools only, no mmcv or
#                        toolboxes (CI's old-end environment); default 1
#   VENV                 the venv's path (default: .venv for requirements.txt,
#                        .venv-<suffix> for requirements-<suffix>.txt, with
#                        -core added when MMPARCNET_TOOLBOXES=0)
#   PYTHON               the interpreter (default: the pin file's `# python:`)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pins=$(cd "$repo" && realpath "${1:-requirements.txt}")
[[ -f "$pins" ]] || { echo "setup-env: no pin file $pins" >&2; exit 1; }
suffix=$(basename "$pins" .txt | sed -E 's/^requirements-?//')
cache="${MMPARCNET_CACHE:-$HOME/.cache/mmparcnet}"
toolboxes=${MMPARCNET_TOOLBOXES:-1}
[[ "$toolboxes" == 0 ]] && suffix="${suffix:+$suffix-}core"
venv=${VENV:-$repo/.venv${suffix:+-$suffix}}
python_version=$(sed -nE 's/^# python: *([0-9.]+).*/\1/p' "$pins" | head -n1)
find_python() {  # a python$1 that runs: on PATH, else a pyenv version
  local candidate
  for candidate in "$(command -v "python$1")" \
    "$(pyenv root 2>/dev/null)"/versions/"$1"*/bin/"python$1"; do
    [[ -x "$candidate" ]] && "$candidate" -c '' 2>/dev/null &&
      { echo "$candidate"; return 0; }
  done
  return 1
}
python=${PYTHON:-$(find_python "${python_version:-3}" || true)}
# a pin file may name other interpreters its versions have wheels for
fallbacks=$(sed -nE 's/^# python-fallback: *(.*)/\1/p' "$pins" | head -n1)
for version in $fallbacks; do
  [[ -n "$python" ]] && break
  python=$(find_python "$version" || true)
  [[ -n "$python" ]] && echo "[setup-env] warning: no python$python_version," \
    "using $python ($pins is tested with $python_version)" >&2
done
[[ -n "$python" ]] || { echo "setup-env: $pins asks for Python $python_version," \
  "but no python$python_version runs here (pyenv install $python_version," \
  "or PYTHON=/path/to/python)" >&2; exit 1; }

log() { echo "[setup-env] $(basename "$venv"): $*"; }

# The package itself is installed editable; only a change of setup.py needs a
# re-install, which takes seconds.
install_package() {
  local stamp="$venv/.mmparcnet-package-stamp" value
  value=$(sha256sum "$repo/setup.py" | cut -d' ' -f1)
  [[ -f "$stamp" && "$(cat "$stamp")" == "$value" ]] && return 0
  log "mmparcnet (editable)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    --no-build-isolation -e "$repo"
  echo "$value" >"$stamp"
}

stamp_value=$( (cat "$pins" "${BASH_SOURCE[0]}"; echo "toolboxes=$toolboxes") |
  sha256sum | cut -d' ' -f1)
stamp_file="$venv/.mmparcnet-env-stamp"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
  install_package
  exit 0
fi

pin() {  # the requirement line for one package, e.g. `pin torch` -> torch==2.14.1
  local line
  line=$(grep -iE "^$1([=<>!~ ]|$)" "$pins" | head -n1)
  [[ -n "$line" ]] || { echo "setup-env: no pin for '$1' in $pins" >&2; exit 1; }
  echo "$line"
}
version_of() { pin "$1" | sed -E 's/^[^=]*==//'; }
pinned() { grep -qiE "^$1([=<>!~ ]|$)" "$pins"; }  # optional packages

# PyPI's torch for Linux x86_64 is a CUDA build: a venv takes 5-6.5 GB, and
# about 7.6 GB at the peak of its install (measured). Say so before starting
# rather than die half-way with "No space left on device".
need_gb=${MMPARCNET_MIN_FREE_GB:-8}
mkdir -p "$(dirname "$venv")"
free_kb=$(df -Pk "$(dirname "$venv")" | awk 'NR == 2 {print $4}') || free_kb=
used_kb=0  # the old venv is replaced: its space comes back
if [[ -d "$venv" ]]; then
  used_kb=$(du -sk "$venv" 2>/dev/null | awk '{print $1}') || used_kb=0
fi
if [[ -n "$free_kb" ]] && awk -v free="$free_kb" -v used="${used_kb:-0}" \
  -v need="$need_gb" 'BEGIN {exit !((free + used) / 1048576 < need)}'; then
  echo "setup-env: building $venv needs about $need_gb GB free on its" \
    "file system, and $(awk -v k="$((free_kb + ${used_kb:-0}))" \
    'BEGIN {printf "%.1f", k / 1048576}') GB are free. Free some space, or" \
    "put the venv elsewhere with VENV=/path (MMPARCNET_MIN_FREE_GB changes" \
    "the check; pip's cache and temporary files may need space elsewhere)." >&2
  exit 1
fi

log "creating $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
py="$venv/bin/python"
pip_install() { "$py" -m pip install --disable-pip-version-check -q "$@"; }

log "torch and torchvision"
pip_install "$(pin torch)" "$(pin torchvision)" $(pinned numpy && pin numpy)

optional=()
for package in onnxscript; do pinned $package && optional+=("$(pin $package)"); done
if [[ "$toolboxes" == 0 ]]; then
  log "mmengine, ONNX, test tools (no mmcv, no toolboxes)"
  pip_install -c "$pins" "$(pin setuptools)" wheel "$(pin mmengine)" \
    "$(pin onnx)" "$(pin onnxruntime)" "${optional[@]}" \
    "$(pin pytest)" "$(pin hypothesis)"
  "$py" -c 'import torch, mmengine; print(f"[setup-env] ready: torch {torch.__version__}, mmengine {mmengine.__version__}, no mmcv")'
  echo "$stamp_value" >"$stamp_file"
  install_package
  exit 0
fi

# openmim pulls in openxlab, which drags setuptools down to 60.x (too old for
# torch and for building mmcv): install it first, then put setuptools back.
log "openmim, then setuptools re-pinned"
pip_install -c "$pins" "$(pin openmim)"
pip_install -c "$pins" "$(pin setuptools)" wheel ninja
pip_install -c "$pins" "$(pin mmengine)"

torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
py_tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
mmcv_version=$(version_of mmcv)
wheel_dir="$cache/mmcv-$mmcv_version-torch$torch_version-$py_tag"
if ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
  log "compiling mmcv $mmcv_version with ops against torch $torch_version (about 10 minutes on 2 cores)"
  mkdir -p "$cache"
  build_dir=$(mktemp -d "$cache/build.XXXXXX")
  # torch >= 2.10's headers need C++20 while mmcv's setup.py asks for C++14/17:
  # a compiler wrapper raises the standard (torch's extension builder honours
  # CXX); older torch builds with the wrapper too.
  cat >"$build_dir/cxx20" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  case "$a" in -std=c++14|-std=c++17|-std=gnu++14|-std=gnu++17) a=-std=c++20 ;; esac
  args+=("$a")
done
exec g++ "${args[@]}"
WRAP
  chmod +x "$build_dir/cxx20"
  CXX="$build_dir/cxx20" MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
    "$py" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
    --no-cache-dir -w "$build_dir/out" "$(pin mmcv)"
  mkdir -p "$wheel_dir"
  mv "$build_dir"/out/mmcv-*.whl "$wheel_dir/"
  rm -rf "$build_dir"
else
  log "reusing the compiled mmcv wheel in $wheel_dir"
fi

log "mmcv, mmdet, mmsegmentation, mmpretrain, ONNX, test tools"
pip_install -c "$pins" "$wheel_dir"/mmcv-"$mmcv_version"-*.whl \
  "$(pin mmdet)" "$(pin mmsegmentation)" "$(pin ftfy)" "$(pin regex)" \
  "$(pin mmpretrain)" \
  "$(pin onnx)" "${optional[@]}" "$(pin onnxruntime)" \
  "$(pin pytest)" "$(pin hypothesis)" \
  $(for tool in flake8 isort yapf codespell; do pinned $tool && pin $tool; done)
# MMDeploy asks for protobuf<=3.20.2 (for its gRPC service), which onnx
# refuses; its export code runs on the newer one: without its dependencies,
# plus the two its export imports
if pinned mmdeploy; then
  log "mmdeploy (without its dependencies)"
  pip_install --no-deps "$(pin mmdeploy)"
  pip_install -c "$pins" --no-deps "$(pin aenum)" "$(pin multiprocess)" "$(pin dill)"
fi
# other packages may have moved setuptools again; mmengine's `mmdet::` config
# inheritance needs pkg_resources, which setuptools >= 82 no longer has; from
# 80.9 on every import of it prints a UserWarning (mim, the demo): < 80.9
pip_install "$(pin setuptools)"

"$py" - <<'CHECK'
import torch, mmcv, mmdet, mmseg, mmpretrain, mmengine
from mmcv.ops import nms, RoIAlign  # noqa: F401  (the compiled ops must be there)
print(f"[setup-env] ready: torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"mmpretrain {mmpretrain.__version__}")
CHECK
echo "$stamp_value" >"$stamp_file"
install_package
