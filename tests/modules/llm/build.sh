#!/usr/bin/env bash
# Builds the ao-cu language-model test process tests/modules/build/llm-generate.wasm (format
# wasm32-unknown-emscripten2) from tests/modules/llm/generate.c with Debian's emscripten 3.1.6.
# Its ao_tensor.model_* imports are served by crates/cu-wasm/src/host/model.rs (docs/tensor-api.md).
# Called at the end of tests/modules/build.sh; incremental (FORCE=1 rebuilds).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../common/build_c_process.sh" llm/build.sh "$here/generate.c" "$here/../build/llm-generate.wasm" \
  model_open model_info model_chat model_detokenize model_forward model_forward_batch
