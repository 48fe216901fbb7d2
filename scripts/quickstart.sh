#!/usr/bin/env bash
# Build Warden and the demo server, then serve examples/quickstart.toml on 127.0.0.1:8931 with the
# built-in authorization server. On first run a local user `dev` is created with a random password
# (printed once); every run prints a 1-hour development token for curl and scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p warden -p warden-testkit
CFG="${1:-examples/quickstart.toml}"
W=target/release/warden
if [ ! -s warden-data/users.toml ]; then
  PASS="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  # dev may also sign in to the console as its operator (operator scopes are given by name).
  echo "$PASS" | "$W" user add --config "$CFG" dev --scopes mcp,warden:admin,warden:approve >/dev/null
  echo "Created user 'dev' with password: $PASS  (shown once; reset with: warden user add --config $CFG dev)" >&2
fi
mkdir -p warden-data
if [ ! -s warden-data/admin-token ]; then
  (umask 077; head -c 36 /dev/urandom | base64 | tr -d '/+=' > warden-data/admin-token)
fi
TOKEN="$("$W" token mint --config "$CFG" --sub dev --scopes mcp --ttl 1h)"
cat >&2 <<MSG

Warden on http://127.0.0.1:8931/mcp
  OAuth clients: point them at the URL; they discover the built-in authorization server and open
  a login page (user dev).
  Development token (1 hour):
    export WARDEN_TOKEN=$TOKEN
    curl -s http://127.0.0.1:8931/mcp -H "authorization: Bearer \$WARDEN_TOKEN" \\
      -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\
      -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

Operators' console: http://127.0.0.1:8932/console
  "Sign in as an operator" and log in as dev, or paste the admin token in warden-data/admin-token
  (overview, kill switches, approvals, tools, audit).

MSG
"$W" serve --config "$CFG" &
WARDEN_PID=$!
trap 'kill $WARDEN_PID 2>/dev/null' INT TERM
# A short demonstration through every defence: a file read, a query, and an escape attempt.
demo() {
  local url=http://127.0.0.1:8931/mcp sid
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8931/readyz >/dev/null && break; sleep 0.2; done
  sid="$(curl -s -D - -o /dev/null "$url" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"quickstart","version":"1"}}}' \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')"
  [ -n "$sid" ] || return 0
  call() {
    echo "--- $1" >&2
    curl -s "$url" -H "authorization: Bearer $TOKEN" -H "mcp-session-id: $sid" -H 'mcp-protocol-version: 2025-11-25' \
      -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
      -d "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":$2}" | head -c 600 >&2
    echo >&2
  }
  call "read a file (local__read_file README.md)" '{"name":"local__read_file","arguments":{"path":"README.md"}}'
  call "query a table (local__query products, price < 4)" \
    '{"name":"local__query","arguments":{"table":"products","where":[{"column":"price","op":"<","value":4}]}}'
  call "escape attempt, refused (local__read_file ../quickstart.toml)" '{"name":"local__read_file","arguments":{"path":"../quickstart.toml"}}'
  call "injection attempt, refused (local__sql with a stacked DROP)" '{"name":"local__sql","arguments":{"query":"SELECT 1; DROP TABLE products"}}'
  echo "--- every call above is in the audit trail: $W audit tail --config $CFG" >&2
}
demo || true
wait $WARDEN_PID
