#!/usr/bin/env bash
# Installs what is missing, then configures and builds. Idempotent and quiet when nothing is to do.
#   scripts/setup.sh [PRESET]        PRESET: default (build/), debug, asan, tsan — see CMakePresets.json
# Environment:
#   SPARSETRAIN_LIBTORCH=/path/to/libtorch   use this LibTorch (e.g. pytorch.org's CUDA archive)
#                                            instead of the torch wheel in .venv
#   SPARSETRAIN_SKIP_APT=1                   never call apt-get (check only)
set -euo pipefail
source "$(dirname "$0")/common.sh"
preset=${1:-default}

# 1. System packages (Debian names). Everything C/C++ except LibTorch comes from here.
apt_packages=(cmake ninja-build ccache g++ pkg-config python3-venv liburing-dev libcli11-dev
              nlohmann-json3-dev doctest-dev libboost-dev libboost-graph-dev zlib1g-dev
              libdeflate-dev clang-format clang libclang-rt-dev
              libgloo-dev)  # clang: the fuzz harnesses; libgloo-dev: c10d's Gloo headers
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${SPARSETRAIN_SKIP_APT:-0}" = 1 ] && die "missing packages: ${missing[*]}" "apt-get install ${missing[*]}" 3
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -qq "${missing[@]}" >/tmp/sparsetrain-apt.log 2>&1; then
    $sudo apt-get update -qq >>/tmp/sparsetrain-apt.log 2>&1 &&
      $sudo apt-get install -y -qq "${missing[@]}" >>/tmp/sparsetrain-apt.log 2>&1 ||
      die "apt-get could not install ${missing[*]} (log: /tmp/sparsetrain-apt.log)" \
          "install them by hand, or check the network and apt sources" 3
  fi
fi

# 2. The project venv: torch (LibTorch for the build) and the Python tools in scripts/.
req=$ROOT/scripts/requirements.txt
stamp=$VENV/.sparsetrain-requirements
if [ -n "${SPARSETRAIN_LIBTORCH:-}" ]; then
  [ -f "$SPARSETRAIN_LIBTORCH/share/cmake/Torch/TorchConfig.cmake" ] ||
    die "SPARSETRAIN_LIBTORCH='$SPARSETRAIN_LIBTORCH' has no share/cmake/Torch/TorchConfig.cmake" \
        "point it at the unpacked libtorch/ folder" 2
  req_filtered=$(grep -v '^torch==' "$req")
else
  req_filtered=$(cat "$req")
fi
if ! cmp -s <(echo "$req_filtered") "$stamp" 2>/dev/null; then
  say "preparing the Python environment in $VENV (torch is ~4 GB with its CUDA libraries)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" ||
    die "cannot create a venv at $VENV" "install python3-venv, or set SPARSETRAIN_VENV" 3
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r <(echo "$req_filtered") ||
    die "pip could not install scripts/requirements.txt" "check the network or PyPI mirror" 3
  echo "$req_filtered" >"$stamp"
fi

# 3. Configure (once per preset) and build.
build_dir=$(python3 -c "import json,sys; p={x['name']:x for x in json.load(open('$ROOT/CMakePresets.json'))['configurePresets']}; print(p['$preset'].get('binaryDir', p['default']['binaryDir']))" 2>/dev/null) ||
  die "unknown preset '$preset'" "use default, debug, asan or tsan" 2
build_dir=${build_dir/\$\{sourceDir\}/$ROOT}
if [ ! -f "$build_dir/build.ninja" ]; then
  say "configuring $build_dir"
  mkdir -p "$build_dir"
  (cd "$ROOT" && cmake --preset "$preset") >"$build_dir/configure.log" 2>&1 || {
    cat "$build_dir/configure.log" >&2
    die "cmake configure failed (log above)" "delete $build_dir and rerun, or see README 'Building'" 1; }
fi
set +e
cmake --build "$build_dir" -j"$JOBS" 2>&1 | { grep --line-buffered -v '^ninja: no work to do.$' || true; }
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || die "build failed (errors above)" "fix the error, then rerun scripts/setup.sh" 1
