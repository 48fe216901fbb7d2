#!/usr/bin/env bash
# Short fuzzing runs of the policy core and the JSON-RPC parser (fuzz/fuzz_targets): each target
# for SECONDS (default 20). libFuzzer needs unstable compiler flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them, so no nightly toolchain is needed. Installs cargo-fuzz if absent.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-20}"
command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s"
  rc=0
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 >"target/fuzz-$t.log" 2>&1 || rc=$?
  grep -E '^Done|panicked|^SUMMARY|ERROR' "target/fuzz-$t.log" | head -20 || true
  [ "$rc" -eq 0 ] || { tail -40 "target/fuzz-$t.log"; echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/"; exit 1; }
done
echo "fuzz: all targets ran clean"
