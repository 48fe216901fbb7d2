#!/usr/bin/env bash
# Build Warden and the demo server, then serve examples/quickstart.toml on 127.0.0.1:8931.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p warden -p warden-testkit
exec target/release/warden serve --config "${1:-examples/quickstart.toml}"
