#!/usr/bin/env bash
# Install everything the tests need, project-locally: npm packages (conformance suite, Node 22,
# TypeScript SDK, reference server), a Python venv with the Python SDK, and redis-server, HAProxy and the
# PostgreSQL server and git (Debian packages; the tests start their own on loopback). Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy; }
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql; }
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
if [ ! -x "$NODE22" ] || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/sdk" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/server-everything" ] \
   || [ ! -d "$INTEROP/node_modules/conformance-2026" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/client" ] \
   || [ ! -d "$INTEROP/node_modules/@modelcontextprotocol/server" ]; then
  echo "setup: installing npm packages"
  (cd "$INTEROP" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -x "$PY" ] || ! "$PY" -c 'import mcp' 2>/dev/null; then
  echo "setup: creating Python venv"
  python3 -m venv --clear "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$INTEROP/requirements.txt"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
