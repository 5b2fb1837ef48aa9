#!/usr/bin/env bash
# Build (or reuse) the project's virtual environment at <repo>/.venv.
#
# Versions come from requirements.txt alone. mmcv 2.1.0 has no wheels on PyPI,
# so it is compiled once with its ops (nms, RoIAlign, ...) and the wheel is kept
# in a cache outside the clone, keyed by the Python and torch versions, so that
# later clones and CI runs only install it. Re-running this script is cheap: a
# stamp of requirements.txt + this script says whether .venv is up to date.
#
# Environment:
#   MMPARCNET_CACHE  where the compiled mmcv wheel lives (default ~/.cache/mmparcnet)
#   PYTHON           the interpreter to create the venv with (default python3.11 or python3)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
pins="$repo/requirements.txt"
cache="${MMPARCNET_CACHE:-$HOME/.cache/mmparcnet}"
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

log() { echo "[setup-env] $*"; }

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

stamp_value=$(cat "$pins" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
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

log "creating $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
py="$venv/bin/python"
pip_install() { "$py" -m pip install --disable-pip-version-check -q "$@"; }

log "torch and torchvision"
pip_install "$(pin torch)" "$(pin torchvision)"

# openmim pulls in openxlab, which drags setuptools down to 60.x (too old for
# torch and for building mmcv): install it first, then put setuptools back.
log "openmim, then setuptools re-pinned"
pip_install "$(pin openmim)"
pip_install "$(pin setuptools)" wheel ninja
pip_install "$(pin mmengine)"

torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
py_tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
mmcv_version=$(version_of mmcv)
wheel_dir="$cache/mmcv-$mmcv_version-torch$torch_version-$py_tag"
if ! ls "$wheel_dir"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
  log "compiling mmcv $mmcv_version with ops against torch $torch_version (about 10 minutes on 2 cores)"
  mkdir -p "$cache"
  build_dir=$(mktemp -d "$cache/build.XXXXXX")
  # torch >= 2.10's headers need C++20 while mmcv's setup.py asks for C++14/17:
  # a compiler wrapper raises the standard (torch's extension builder honours CXX).
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
  "$(pin onnx)" "$(pin onnxscript)" "$(pin onnxruntime)" \
  "$(pin pytest)" "$(pin hypothesis)"
# other packages may have moved setuptools again; mmengine's `mmdet::` config
# inheritance needs pkg_resources, which setuptools >= 82 no longer has
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
