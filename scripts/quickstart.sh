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
  echo "$PASS" | "$W" user add --config "$CFG" dev >/dev/null
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

MSG
exec "$W" serve --config "$CFG"
