#!/usr/bin/env bash
# Train the injection classifier's heads and write crates/warden-classifier/head.json.
#
# Data: scripts/classifier/data/train.jsonl, built by build_dataset.py (seed and split rules in
# data/MANIFEST.json) from BIPIA's train split, the GitHub MCP tool definitions and the
# repository's own cases. The held-out split (data/heldout.jsonl) is never read here: measure on it
# with `warden bench --classifier .models/all-minilm-l6-v2`.
# Training is deterministic (no sampling): the same data and encoder give the same head.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
mkdir -p target/classifier
# The bundled head is this one, on the frozen encoder. `classifier tune` (same paths, plus
# --calibrate-every 4 --benign-over 0.01) fine-tunes the encoder's top layers instead: measured in
# BENCHMARKS.md, not bundled.
cargo run --release -q -p warden-classifier --example classifier -- train \
  --model .models/all-minilm-l6-v2 --data scripts/classifier/data/train.jsonl \
  --out crates/warden-classifier/head.json --cache target/classifier/train.cache
