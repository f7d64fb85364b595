#!/usr/bin/env bash
# Prepare, on a machine with PyPI access, what the GPU machine (no package index, 64 MiB per call)
# needs for run_gpu.sh, under .gpu/ (git-ignored, like .gpu-build/ where the GPU side builds):
#   .gpu/llama-src.tar.xz        llama-cpp-python's sdist minus docs/tests/models/other GPU back ends (~7 MB)
#   .gpu/py.tar.xz               its llama_cpp package and gguf-py alone (for calls that carry a build)
#   .gpu/ggml-vocab-qwen2.gguf   the real Qwen2 tokenizer, from the same sdist
#   .gpu/whl/                    the wheels of requirements-gpu.txt (every one pinned), for CPython
#                                3.12 manylinux x86_64; check_wheels.py then fails on any wheel that
#                                needs something the list does not pin
#   .gpu/commit                  this checkout's commit (-dirty with changes): result rows record
#                                it, since the GPU machine's copy of the tree has no .git. Write it
#                                again after committing: git describe --always --dirty --abbrev=40 >.gpu/commit
# After a call that ran the `pack` stage, copy its cuda90.tar.xz.* into .gpu/bin/ to skip the
# ~5-minute build next time (README: "Carrying a build between calls").
#
#   benchmarks/gpu_serving/prepare.sh [SDIST]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
version=0.3.36
sdist="${1:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -z "$sdist" ]]; then
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  sdist="$(ls "$work"/llama_cpp_python-*.tar.gz)"
fi
tar -xzf "$sdist" -C "$work"
root="$work/llama_cpp_python-$version"
mkdir -p .gpu/whl .gpu/bin
v=vendor/llama.cpp
(cd "$root" && tar -cf - --exclude="$v/docs" --exclude="$v/tests" --exclude="$v/benches" \
  --exclude="$v/media" --exclude="$v/tools/server/tests" --exclude="$v/models/*" --exclude="$v/.git*" \
  --exclude="$v/ggml/src/ggml-vulkan" --exclude="$v/ggml/src/ggml-sycl" \
  --exclude="$v/ggml/src/ggml-opencl" --exclude="$v/ggml/src/ggml-hexagon" \
  --exclude="$v/ggml/src/ggml-metal" "$v" llama_cpp | xz -T0 -6) >.gpu/llama-src.tar.xz
(cd "$root" && tar -cJf - llama_cpp "$v/gguf-py") >.gpu/py.tar.xz
cp "$root/$v/models/ggml-vocab-qwen2.gguf" .gpu/
rm -f .gpu/whl/*.whl   # two versions of one package would stop the install there
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl -r benchmarks/gpu_serving/requirements-gpu.txt
python3 benchmarks/gpu_serving/check_wheels.py .gpu/whl pyproject.toml "$root/pyproject.toml"
git describe --always --dirty --abbrev=40 >.gpu/commit || echo unknown >.gpu/commit
du -sh .gpu/*
