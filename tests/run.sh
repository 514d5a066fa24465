#!/usr/bin/env bash
# ao-cu's test command: installs what the tests need, builds the test modules from source, then runs
# every test of the workspace (criterion benchmarks included, once each in test mode), and checks
# formatting, lints and the Kubernetes manifests in deploy/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tests/setup.sh
tests/modules/build.sh
python3 tests/modules/wat/gen.py --check
# deploy/: every Kubernetes manifest against the 1.31 API schemas, unknown fields refused.
python3 -m kubernetes_validate --strict --kubernetes-version 1.31.0 deploy/kubernetes/{configmap,service,statefulset}.yaml
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets
