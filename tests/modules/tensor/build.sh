#!/usr/bin/env bash
# Builds the ao-cu inference test process tests/modules/build/tensor-infer.wasm (format
# wasm32-unknown-emscripten2) from tests/modules/tensor/infer.c with Debian's emscripten 3.1.6.
# Its ao_tensor imports are served by crates/cu-wasm/src/host/tensor.rs (docs/tensor-api.md).
# Called at the end of tests/modules/build.sh; incremental (FORCE=1 rebuilds).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../common/build_c_process.sh" tensor/build.sh "$here/infer.c" "$here/../build/tensor-infer.wasm" \
  matmul_i8 requantize add_i8 add_i32 relu_i8 relu_i32 softmax_argmax
