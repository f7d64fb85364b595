#!/usr/bin/env bash
# Build llama.cpp once -- llama-server, llama-quantize (and llama-bench on a GPU)
# plus the shared libraries the Python bindings load -- from the llama.cpp tree
# vendored in llama-cpp-python's source distribution. Offline: no web UI, no
# downloads, no curl/openssl.
#
#   server/llama/build.sh [--cuda ARCH] [--sdist FILE | --src DIR] [--out DIR]
#                         [--jobs N] [--install-python PYTHON [--python-extras LIST]]
#                         [--print-id]
#
# The result is a prefix with bin/ and lib/ (with --cuda also llama-bench and
# llama-batched-bench), and bin/vibe-sample-rows-check, built from tools/: it
# checks the batched sampling of patches/0002 against llama.cpp's own samplers
# on every device. --src builds an already unpacked llama.cpp tree (the GPU
# machine has no package index: carry a trimmed tree there).
# --install-python PYTHON installs llama-cpp-python from the same sdist into
# PYTHON's environment with -DLLAMA_BUILD=OFF (nothing is compiled twice) and
# copies the libraries built here into its llama_cpp/lib, so `import llama_cpp`
# and `python -m llama_cpp.server` work without LLAMA_CPP_LIB_PATH (which would not
# do on its own: llama_cpp/_ggml.py loads libggml from llama_cpp/lib whatever it says).
# --python-extras picks the extras installed with it (default: server; "" for the
# bindings alone, as scripts/install does for vibesdk[local]). Bindings already
# installed at this version with these libraries are left as they are. A finished
# build leaves a stamp; running the script again with the same inputs skips it.
# --print-id prints the id of the patches and tools the stamp names, and exits.
#
# The patches in server/llama/patches/ are applied to the tree first (a tree
# that already has them is left as it is); each says what it fixes and why.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cuda_arch=""
sdist=""
src=""
install_python=""
python_extras="server"
out=""
jobs="$(nproc)"
print_id=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cuda) cuda_arch="$2"; shift 2 ;;
    --sdist) sdist="$2"; shift 2 ;;
    --src) src="$(cd "$2" && pwd)"; shift 2 ;;
    --install-python) install_python="$2"; shift 2 ;;
    --python-extras) python_extras="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --print-id) print_id=1; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

flavour="cpu"; [[ -n "$cuda_arch" ]] && flavour="cuda${cuda_arch}"
out="${out:-${XDG_CACHE_HOME:-$HOME/.cache}/vibesdk/llama.cpp/${LLAMA_CPP_PYTHON_VERSION}-${flavour}}"
patches=("$here"/patches/*.patch)
[[ -e ${patches[0]} ]] || patches=()
tools=("$here"/tools/*.cpp)
[[ -e ${tools[0]} ]] || tools=()
# The CPU build is for this machine (-march=native) but never uses AMX: on an Intel Xeon
# virtual machine (a Firecracker guest) that reports AMX, ggml's AMX matrix kernel died with
# SIGILL at its first tile instruction, on the first prompt of a few dozen tokens. The tile
# units only speed up long prompts on Xeon servers; the CPU build is for laptops and CI.
# (The flags are part of the id, for every flavour, so that --print-id names one build.)
cpu_flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
patches_id="$(cat /dev/null "${patches[@]}" "${tools[@]}" <(echo "$cpu_flags") | sha256sum | cut -c1-12)"
[[ -n "$print_id" ]] && { echo "$patches_id"; exit 0; }
stamp="$out/.built-${LLAMA_CPP_PYTHON_VERSION}-${flavour}-${patches_id}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch_sdist() {
  if [[ -z "$sdist" ]]; then
    python3 -m pip download --quiet --no-deps --no-binary :all: \
      "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" -d "$work/dl"
    sdist="$(ls "$work"/dl/llama_cpp_python-*.tar.gz)"
  fi
}

# apply_patch FILE [-R] [--check]: with patch(1), or git apply where patch is missing.
apply_patch() {
  local file="$1"; shift
  if command -v patch >/dev/null; then
    local opts=(-d "$src" -p1 -s -f)
    for o in "$@"; do [[ $o == --check ]] && opts+=(--dry-run) || opts+=("$o"); done
    patch "${opts[@]}" <"$file" >/dev/null 2>&1
  else
    # The ceiling keeps git from taking a repository around the tree for the patch's root.
    GIT_CEILING_DIRECTORIES="$(dirname "$src")" git -C "$src" apply "$@" - <"$file" >/dev/null 2>&1
  fi
}

build() {
  if [[ -z "$src" ]]; then
    fetch_sdist
    # Only the C/C++ tree is needed; skip the model vocabularies and tests.
    tar -xzf "$sdist" -C "$work" --wildcards \
      --exclude='*/vendor/llama.cpp/models/*' --exclude='*/vendor/llama.cpp/tests/*' \
      --exclude='*/vendor/llama.cpp/docs/*' --exclude='*/vendor/llama.cpp/tools/server/tests/*' \
      '*/vendor/llama.cpp'
    src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  fi
  local p
  for p in "${patches[@]}"; do
    if apply_patch "$p" -R --check; then
      echo "patch $(basename "$p"): already applied"
    elif apply_patch "$p"; then
      echo "patch $(basename "$p"): applied"
    else
      echo "build.sh: $(basename "$p") does not apply to $src (is 'patch' or 'git' installed?)" >&2
      exit 1
    fi
  done

  local args=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=ON
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_MTMD=OFF
    -DCMAKE_INSTALL_RPATH='$ORIGIN/../lib' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
  )
  [[ -z "$cuda_arch" ]] && args+=("-DCMAKE_C_FLAGS=$cpu_flags" "-DCMAKE_CXX_FLAGS=$cpu_flags")
  local targets=(llama-server llama-quantize)
  if [[ -n "$cuda_arch" ]]; then
    args+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${cuda_arch}" -DGGML_NATIVE=OFF)
    # llama-batched-bench measures the engine's decode rate without the server.
    targets+=(llama-bench llama-batched-bench)
  fi
  local gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S "$src" -B "$work/build" "${gen[@]}" "${args[@]}" >"$work/configure.log" \
    || { cat "$work/configure.log" >&2; exit 1; }
  cmake --build "$work/build" --parallel "$jobs" --target "${targets[@]}"

  rm -rf "$out"; mkdir -p "$out/bin" "$out/lib"
  for t in "${targets[@]}"; do cp "$work/build/bin/$t" "$out/bin/"; done
  find "$work/build" -name 'lib*.so*' -exec cp -P {} "$out/lib/" \;
  # Our own checks against this build (tools/*.cpp, one program each, named vibe-<name>).
  local tool name
  for tool in "${tools[@]}"; do
    name="vibe-$(basename "$tool" .cpp | tr _ -)"
    "${CXX:-c++}" -std=c++17 -O2 -I"$src/include" -I"$src/ggml/include" "$tool" -o "$out/bin/$name" \
      -L"$out/lib" -lllama -lggml -lggml-base -Wl,-rpath,'$ORIGIN/../lib'
  done
  touch "$stamp"
  echo "llama.cpp ${LLAMA_CPP_PYTHON_VERSION} (${flavour}) built in $out"
}

bindings_dir() {
  "$install_python" -c 'import importlib.util, os; s = importlib.util.find_spec("llama_cpp"); print(os.path.dirname(s.origin) if s else "")' 2>/dev/null
}

install_bindings() {
  local pkg installed
  pkg="$(bindings_dir)"
  if [[ -n "$pkg" ]]; then
    installed="$("$install_python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)"
    if [[ "$installed" == "$LLAMA_CPP_PYTHON_VERSION" ]] && cmp -s "$out/lib/libllama.so" "$pkg/lib/libllama.so"; then
      echo "llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION}: already installed for $install_python with the libraries of $out"
      return
    fi
  fi
  fetch_sdist
  local spec="llama-cpp-python"
  [[ -n "$python_extras" ]] && spec="llama-cpp-python[${python_extras}]"
  # LLAMA_BUILD=OFF: the wheel carries only the Python package (scikit-build-core runs
  # cmake's configure step and compiles nothing); the libraries come from this build, so
  # the bindings and llama-server share one llama.cpp.
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
    "$install_python" -m pip install --quiet --no-cache-dir \
    "${spec} @ file://$(cd "$(dirname "$sdist")" && pwd)/$(basename "$sdist")"
  pkg="$(bindings_dir)"
  mkdir -p "$pkg/lib"
  cp -P "$out"/lib/lib*.so* "$pkg/lib/"
  echo "llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION} installed for $install_python with the libraries of $out"
}

if [[ -f "$stamp" && -x "$out/bin/llama-server" ]]; then
  echo "llama.cpp ${LLAMA_CPP_PYTHON_VERSION} (${flavour}) already built in $out"
else
  build
fi
if [[ -n "$install_python" ]]; then
  install_bindings
fi
