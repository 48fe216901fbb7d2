#!/usr/bin/env bash
# Interop through Warden: the official TypeScript and Python SDK clients against the official
# reference server (server-everything, stdio upstream, 2025-11-25) and a Python SDK server (HTTP
# upstream, dual-era: Warden finds and speaks 2026-07-28 to it, translating for 2025 clients);
# the TypeScript client also in front of a plain TypeScript SDK server (no instructions/prompts/resources),
# and both clients through HAProxy in front of three replicas of that Warden (one [cluster] key);
# the SDKs' OAuth flows through HAProxy in front of three replicas sharing the built-in
# authorization server's state in Redis.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="${WARDEN_BIN_DIR:-$ROOT/target/debug}"
TMP="$(mktemp -d)"
PP=$(free_port); WP=$(free_port); ADP=$(free_port); ADP2=$(free_port)
head -c 48 /dev/urandom | base64 | tr -d '\n/+=' > "$TMP/admin-token"
start_bg "$PY" "$INTEROP/py_server.py" "$PP" >"$TMP/py-server.log" 2>&1
wait_port "$PP" 60
cat > "$TMP/interop.toml" <<TOML
[listen]
addr = "127.0.0.1:$WP"
[[upstream]]
name = "everything"
transport = "stdio"
command = "$NODE22"
args = ["$INTEROP/node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]
client_requests = ["sampling", "elicitation", "roots"]   # its demo tools use all three
[upstream.sandbox]                  # the official server, sandboxed: it may read its own packages
read_only = ["$INTEROP"]
network = "deny"
[[upstream]]
name = "py"
transport = "http"
url = "http://127.0.0.1:$PP/mcp"
client_requests = ["sampling", "elicitation", "roots"]
[[upstream]]                        # the same server over stdio: a 2026-07-28 stdio upstream
name = "pys"
transport = "stdio"
command = "$PY"
args = ["$INTEROP/py_server.py", "--stdio"]
client_requests = ["sampling", "elicitation"]
[upstream.sandbox]                  # the interpreter may live in a home directory closed to the user nobody
enabled = false
[[upstream]]                        # a TypeScript SDK v2 server over stdio: another 2026-07-28 upstream
name = "ts26"
transport = "stdio"
command = "$NODE22"
args = ["$INTEROP/ts-server-2026.mjs"]
client_requests = ["elicitation"]
[upstream.sandbox]
read_only = ["$INTEROP"]
network = "deny"
# Held for the user's approval (MCP elicitation): the Python client approves, the TS one declines.
[[rule]]
id = "sum-needs-approval"
servers = ["everything"]
tools = ["get-sum"]
approval = "user"
[approval]
wait_secs = 20
[admin]
addr = "127.0.0.1:$ADP"
token = { file = "$TMP/admin-token" }
$ALLOW_ALL
TOML
start_bg "$BIN/warden" serve --config "$TMP/interop.toml" 2>"$TMP/warden.log"
WPID=$!
wait_ready "http://127.0.0.1:$WP/readyz" 60
for up in "everything.*protocol=2025-11-25" "py protocol=2026-07-28" "pys.*protocol=2026-07-28" "ts26.*protocol=2026-07-28"; do
  grep -q "upstream ready.*upstream=$up" "$TMP/warden.log" || { echo "interop: expected upstream=$up"; grep "upstream ready" "$TMP/warden.log"; exit 1; }
done
# A second Warden with the built-in authorization server and one local user, for the SDKs' OAuth flows.
AP=$(free_port)
sed -e "s/127.0.0.1:$WP/127.0.0.1:$AP/" -e "s/127.0.0.1:$ADP/127.0.0.1:$ADP2/" "$TMP/interop.toml" > "$TMP/oauth.toml"
printf '[auth]\nrequired_scopes = ["mcp"]\n[auth.builtin]\n' >> "$TMP/oauth.toml"
echo "interop-password-1" | "$BIN/warden" user add --config "$TMP/oauth.toml" interop >/dev/null
start_bg "$BIN/warden" serve --config "$TMP/oauth.toml" 2>"$TMP/warden-oauth.log"
wait_ready "http://127.0.0.1:$AP/readyz" 60
# A third Warden in front of a plain server (no instructions, prompts or resources), as most are.
PLP=$(free_port)
cat > "$TMP/plain.toml" <<TOML
[listen]
addr = "127.0.0.1:$PLP"
[[upstream]]
name = "plain"
namespace = ""
transport = "stdio"
command = "$NODE22"
args = ["$INTEROP/plain-server.mjs"]
[upstream.sandbox]
read_only = ["$INTEROP"]
network = "deny"
[audit]
path = "$TMP/plain-audit.jsonl"
signing_key = "$TMP/plain-audit.key"
$ALLOW_ALL
TOML
start_bg "$BIN/warden" serve --config "$TMP/plain.toml" 2>"$TMP/warden-plain.log"
wait_ready "http://127.0.0.1:$PLP/readyz" 60
# Three replicas of that Warden with one [cluster] key, behind HAProxy (round-robin per request,
# no stickiness): the SDK clients' sessions are served by whichever replica gets each request.
head -c 32 /dev/urandom | base64 > "$TMP/cluster-key"
HAP=$(free_port)
{ printf 'global\n  maxconn 200\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n'
  printf 'frontend fe\n  bind 127.0.0.1:%s\n  default_backend be\nbackend be\n  balance roundrobin\n' "$HAP"; } > "$TMP/haproxy.cfg"
for r in 1 2 3; do
  RP=$(free_port)
  sed -e "s/127.0.0.1:$PLP/127.0.0.1:$RP/" -e "s#$TMP/plain-audit#$TMP/replica-$r-audit#g" "$TMP/plain.toml" > "$TMP/replica-$r.toml"
  printf '[cluster]\nkey = { file = "%s" }\n' "$TMP/cluster-key" >> "$TMP/replica-$r.toml"
  start_bg "$BIN/warden" serve --config "$TMP/replica-$r.toml" 2>"$TMP/warden-replica-$r.log"
  wait_ready "http://127.0.0.1:$RP/readyz" 60
  printf '  server r%s 127.0.0.1:%s\n' "$r" "$RP" >> "$TMP/haproxy.cfg"
done
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
start_bg "$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1
wait_port "$HAP" 30
# Three replicas with the built-in authorization server, its state in one Redis, behind a second
# HAProxy: the SDKs' OAuth flows (registration, consent page and form, code) cross replicas.
RDP=$(free_port)
start_bg redis-server --port "$RDP" --save '' --appendonly no >"$TMP/redis.log" 2>&1
wait_port "$RDP" 30
HAP2=$(free_port)
sed -e "s/bind 127.0.0.1:$HAP/bind 127.0.0.1:$HAP2/" -e '/^  server /d' "$TMP/haproxy.cfg" > "$TMP/haproxy-oauth.cfg"
for r in 1 2 3; do
  RP=$(free_port)
  sed -e "s/127.0.0.1:$PLP/127.0.0.1:$RP/" -e "s#$TMP/plain-audit#$TMP/oauth-replica-$r-audit#g" "$TMP/plain.toml" > "$TMP/oauth-replica-$r.toml"
  printf '[cluster]\nkey = { file = "%s" }\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$TMP/cluster-key" "$RDP" >> "$TMP/oauth-replica-$r.toml"
  printf '[auth]\nrequired_scopes = ["mcp"]\n[auth.builtin]\nkey_file = "%s"\nusers_file = "%s"\n' "$TMP/as-signing.pk8" "$TMP/as-users.toml" >> "$TMP/oauth-replica-$r.toml"
  [ "$r" -eq 1 ] && { echo "interop-password-1" | "$BIN/warden" user add --config "$TMP/oauth-replica-1.toml" interop >/dev/null; }
  start_bg "$BIN/warden" serve --config "$TMP/oauth-replica-$r.toml" 2>"$TMP/warden-oauth-replica-$r.log"
  wait_ready "http://127.0.0.1:$RP/readyz" 60
  printf '  server r%s 127.0.0.1:%s\n' "$r" "$RP" >> "$TMP/haproxy-oauth.cfg"
done
start_bg "$HAPROXY" -db -f "$TMP/haproxy-oauth.cfg" >"$TMP/haproxy-oauth.log" 2>&1
wait_port "$HAP2" 30
failures=0
(cd "$INTEROP" && "$NODE22" ts-plain.mjs "http://127.0.0.1:$HAP/mcp") || failures=$((failures + 1))
"$PY" "$INTEROP/py_plain.py" "http://127.0.0.1:$HAP/mcp" || failures=$((failures + 1))
taken=$(cat "$TMP"/warden-replica-*.log | grep -c "session taken up on this replica" || true)
echo "interop: through HAProxy over 3 replicas, sessions were taken up $taken time(s) by replicas that did not open them"
[ "$taken" -ge 2 ] || { echo "interop: expected the SDK sessions to be spread over the replicas"; failures=$((failures + 1)); }
(cd "$INTEROP" && "$NODE22" ts-oauth.mjs "http://127.0.0.1:$HAP2/mcp" interop interop-password-1 shout) || failures=$((failures + 1))
"$PY" "$INTEROP/py_oauth.py" "http://127.0.0.1:$HAP2/mcp" interop interop-password-1 shout || failures=$((failures + 1))
served=$(for r in 1 2 3; do grep -cE "client registered|authorization granted" "$TMP/warden-oauth-replica-$r.log" || true; done | grep -vc '^0$' || true)
echo "interop: the SDKs' OAuth flows through HAProxy over 3 replicas: registrations and consents on $served replica(s)"
(cd "$INTEROP" && "$NODE22" ts-plain.mjs "http://127.0.0.1:$PLP/mcp") || failures=$((failures + 1))
(cd "$INTEROP" && "$NODE22" ts-client.mjs "http://127.0.0.1:$WP/mcp") || failures=$((failures + 1))
"$PY" "$INTEROP/py_client.py" "http://127.0.0.1:$WP/mcp" || failures=$((failures + 1))
# The same SDKs in MCP 2026-07-28 mode (stateless; multi round-trips translated by Warden).
"$PY" "$INTEROP/py_client_2026.py" "http://127.0.0.1:$WP/mcp" || failures=$((failures + 1))
(cd "$INTEROP" && "$NODE22" ts-client-2026.mjs "http://127.0.0.1:$WP/mcp") || failures=$((failures + 1))
(cd "$INTEROP" && "$NODE22" ts-oauth.mjs "http://127.0.0.1:$AP/mcp" interop interop-password-1) || failures=$((failures + 1))
"$PY" "$INTEROP/py_oauth.py" "http://127.0.0.1:$AP/mcp" interop interop-password-1 || failures=$((failures + 1))
# A stateless (2026-07-28) stdio upstream is one child for every session: two pooled sessions
# (two capability sets) call the TypeScript v2 server; Warden has one child for them and one
# for its own control connection.
for caps in '{}' '{"elicitation":{}}'; do
  curl -sf "http://127.0.0.1:$WP/mcp" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: ts26__add' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ts26__add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":'"$caps"'}}}' \
    > "$TMP/ts26-call.json" || true
  grep -q '"text":"3"' "$TMP/ts26-call.json" || { echo "interop: ts26__add as a 2026 request failed: $(cat "$TMP/ts26-call.json")"; failures=$((failures + 1)); }
done
children=$(pgrep -P "$WPID" -f ts-server-2026.mjs | wc -l)
echo "interop: the stateless stdio upstream ts26 runs as $children child process(es) of Warden (control connection + one shared)"
[ "$children" -eq 2 ] || { echo "interop: expected 2 ts26 children"; ps -o pid,ppid,args --ppid "$WPID"; failures=$((failures + 1)); }
if [ "$failures" -ne 0 ]; then
  echo "--- warden log (tail)"; tail -40 "$TMP/warden.log"; echo "--- py server log (tail)"; tail -20 "$TMP/py-server.log"
  echo "--- warden (oauth) log (tail)"; tail -40 "$TMP/warden-oauth.log"
  echo "--- warden (plain) log (tail)"; tail -20 "$TMP/warden-plain.log"
fi
echo "interop: $((13 - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
