#!/usr/bin/env bash
# Run all of Warden's tests: formatting and lints, unit and integration tests (nextest), the
# official MCP conformance suite through Warden (stdio and HTTP upstreams), and interop with the
# official TypeScript and Python SDKs, the deploy/ alert rules and dashboard (promtool), and short
# fuzzing runs (scripts/fuzz.sh). Installs what it
# needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh clone gains nothing from incremental state; it only costs disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo nextest run --workspace --locked --no-fail-fast
bash scripts/conformance.sh
bash scripts/interop.sh
bash scripts/check-deploy.sh
bash scripts/fuzz.sh 15
echo "test.sh: all suites passed"
