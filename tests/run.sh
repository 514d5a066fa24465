#!/usr/bin/env bash
# ao-cu's test command: installs what the tests need, builds the test modules from source, then runs
# every test of the workspace (criterion benchmarks included, once each in test mode), the store's suite
# again on PostgreSQL and S3, and checks formatting, lints and the Kubernetes manifests in deploy/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tests/setup.sh
tests/modules/build.sh
python3 tests/modules/wat/gen.py --check
# deploy/: every Kubernetes manifest against the 1.31 API schemas, unknown fields refused.
python3 -m kubernetes_validate --strict --kubernetes-version 1.31.0 deploy/kubernetes/{configmap,service,statefulset}.yaml \
  deploy/cluster/{configmap,nodes-service,statefulset,proxy-service,proxy}.yaml
# deploy/cluster: the cluster's proxy configuration parses (placeholder addresses).
AO_CU_PROXY_BIND=127.0.0.1:1 AO_CU_NODE1=127.0.0.1:2 AO_CU_NODE2=127.0.0.1:3 AO_CU_NODE3=127.0.0.1:4 \
  haproxy -c -q -f deploy/cluster/haproxy.cfg
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets
# cu-store's suite once more with PostgreSQL as the engine and checkpoint blobs in S3 (throwaway
# PostgreSQL and s3s-fs servers on loopback).
# (Each in a directory of its own under /tmp: the PostgreSQL server runs as the postgres user.)
pg_dir="$(mktemp -d)"
s3_dir="$(mktemp -d)"
trap 'tests/pg/stop.sh "$pg_dir" >/dev/null 2>&1 || true; tests/s3/stop.sh "$s3_dir" || true; rm -rf "$pg_dir" "$s3_dir"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_url="$(tests/pg/start.sh "$pg_dir" "$(free_port)")"
s3_url="$(tests/s3/start.sh "$s3_dir" "$(free_port)")"
CU_STORE_TEST_POSTGRES="$pg_url" CU_STORE_TEST_S3="$s3_url,$s3_dir/root" cargo test -p cu-store --lib
