#!/usr/bin/env bash
# ao-cu's test command: installs what the tests need, builds the test modules from source, then runs
# every test of the workspace (criterion benchmarks included, once each in test mode), and checks
# formatting and lints.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tests/setup.sh
tests/modules/build.sh
python3 tests/modules/wat/gen.py --check
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets
