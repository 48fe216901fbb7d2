#!/usr/bin/env bash
# The official MCP conformance suite (server scenarios) against Warden fronting the fixture
# server over stdio and over HTTP, and against the fixture directly (baseline); and its client
# authorization scenarios against Warden's upstream OAuth client.
# Needs: scripts/setup.sh, and `cargo build --workspace` done.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BIN="${WARDEN_BIN_DIR:-$ROOT/target/debug}"
CONF="$INTEROP/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[ -f "$CONF" ] || CONF="$INTEROP/node_modules/.bin/conformance"
TMP="$(mktemp -d)"
failures=0; passed=0

CONF26="$INTEROP/node_modules/conformance-2026/dist/index.js"
BASELINE26="$ROOT/tests/conformance-2026-baseline.yml"

# MCP 2026-07-28 (stateless): every scenario of the 0.2.0-alpha.10 suite (`--suite all`, which
# includes the revision's own); the ones not served yet are listed, with why, in the baseline,
# and a pass of a listed one (a stale entry) fails too.
run_suite_2026() { # name url [baseline]: without one, every scenario must pass
  local out="$TMP/$1-2026.log" expected=()
  [ -n "${3:-}" ] && expected=(--expected-failures "$3")
  echo "conformance 2026-07-28: $1 ($2)"
  if "$NODE22" "$CONF26" server --url "$2" --spec-version 2026-07-28 --suite all \
      "${expected[@]}" >"$out" 2>&1 && { [ -n "${3:-}" ] || grep -q "Total: [0-9]* passed, 0 failed" "$out"; }; then
    grep "Total:" "$out"; passed=$((passed + 1))
  else
    cat "$out"; echo "conformance 2026-07-28: $1 FAILED"; failures=$((failures + 1))
  fi
}

run_suite() { # name url
  local out="$TMP/$1.log"
  echo "conformance: $1 ($2)"
  if "$NODE22" "$CONF" server --url "$2" >"$out" 2>&1 && grep -q "Total: [0-9]* passed, 0 failed" "$out"; then
    grep "Total:" "$out"; passed=$((passed + 1))
  else
    cat "$out"; echo "conformance: $1 FAILED"; failures=$((failures + 1))
  fi
}

FX=$(free_port)
start_bg "$BIN/warden-fixture" --http "127.0.0.1:$FX" 2>"$TMP/fixture.log"
wait_port "$FX"

W1=$(free_port); W2=$(free_port); W3=$(free_port); W4=$(free_port)
cat > "$TMP/stdio.toml" <<TOML
[listen]
addr = "127.0.0.1:$W1"
[[upstream]]
name = "fixture"
namespace = ""
transport = "stdio"
command = "$BIN/warden-fixture"
args = ["--stdio"]
client_requests = ["sampling", "elicitation", "roots"]   # the suite's scenarios use all three
$ALLOW_ALL
TOML
cat > "$TMP/http.toml" <<TOML
[listen]
addr = "127.0.0.1:$W2"
[[upstream]]
name = "fixture"
namespace = ""
transport = "http"
url = "http://127.0.0.1:$FX/mcp"
client_requests = ["sampling", "elicitation", "roots"]
$ALLOW_ALL
TOML
# the same with every answer as an SSE stream (priming events, multiple concurrent streams)
sed -e "s/127.0.0.1:$W1/127.0.0.1:$W3/" -e 's/^\[listen\]$/[listen]\nsse_grace_ms = 0/' "$TMP/stdio.toml" > "$TMP/sse.toml"
# The fixture's HTTP endpoint serves both generations: `http` finds 2026-07-28 (protocol =
# "auto"), `http2025` is pinned to the 2025 session handshake.
sed -e "s/127.0.0.1:$W2/127.0.0.1:$W4/" -e 's/^transport = "http"$/transport = "http"\nprotocol = "2025-11-25"/' "$TMP/http.toml" > "$TMP/http2025.toml"
# one audit trail per Warden (a chain has one writer); the checkpoint key is shared
for c in stdio http sse http2025; do printf '[audit]\npath = "audit-%s.db"\n' "$c" >> "$TMP/$c.toml"; done
start_bg "$BIN/warden" serve --config "$TMP/stdio.toml" 2>"$TMP/warden-stdio.log"
start_bg "$BIN/warden" serve --config "$TMP/sse.toml" 2>"$TMP/warden-sse.log"
start_bg "$BIN/warden" serve --config "$TMP/http.toml" 2>"$TMP/warden-http.log"
start_bg "$BIN/warden" serve --config "$TMP/http2025.toml" 2>"$TMP/warden-http2025.log"
wait_ready "http://127.0.0.1:$W1/readyz"
wait_ready "http://127.0.0.1:$W2/readyz"
wait_ready "http://127.0.0.1:$W3/readyz"
wait_ready "http://127.0.0.1:$W4/readyz"
grep -q 'upstream ready.*protocol=2026-07-28' "$TMP/warden-http.log" || { echo "conformance: the HTTP upstream is not spoken to as 2026-07-28"; cat "$TMP/warden-http.log"; exit 1; }
grep -q 'upstream ready.*protocol=2025-11-25' "$TMP/warden-http2025.log" || { echo "conformance: the pinned upstream is not spoken to as 2025-11-25"; exit 1; }

run_suite fixture-direct "http://localhost:$FX/mcp"
run_suite warden-stdio-upstream "http://localhost:$W1/mcp"
run_suite warden-2026-http-upstream "http://localhost:$W2/mcp"
run_suite warden-2025-http-upstream "http://localhost:$W4/mcp"
run_suite warden-always-sse "http://localhost:$W3/mcp"
# In front of a 2025 upstream (translated), with the baseline; in front of the fixture speaking
# 2026-07-28 (its questions under its own keys), every scenario.
run_suite_2026 warden-stdio-upstream "http://localhost:$W1/mcp" "$BASELINE26"
run_suite_2026 warden-2026-http-upstream "http://localhost:$W2/mcp"
run_suite_2026 warden-2025-http-upstream "http://localhost:$W4/mcp" "$BASELINE26"
# The tasks extension (SEP-2663; extension scenarios, so `--force`): the fixture directly, then
# through Warden over a 2026 HTTP upstream and a 2025 stdio one (the task ids Warden seals, its
# routing of tasks/get, tasks/update and tasks/cancel, the questions a task asks).
run_tasks() { # name url
  local ok=0 n=0 checks=0 sc out
  for sc in lifecycle capability-negotiation wire-fields request-state-removal mrtr-input request-headers \
            dispatch-and-envelope status-notifications required-task-error mrtr-composition; do
    n=$((n + 1)); out="$TMP/tasks-$1-$sc.log"
    "$NODE22" "$CONF26" server --url "$2" --spec-version 2026-07-28 --force --scenario "tasks-$sc" >"$out" 2>&1 || true
    if grep -q "^Passed: [0-9]*/[0-9]*, 0 failed" "$out"; then
      ok=$((ok + 1)); checks=$((checks + $(sed -n 's/^Passed: \([0-9]*\)\/.*/\1/p' "$out")))
    else cat "$out"; echo "conformance tasks: $sc ($1) FAILED"; fi
  done
  echo "conformance tasks extension: $1: $ok of $n scenarios ($checks checks passed)"
  if [ "$ok" -eq "$n" ]; then passed=$((passed + 1)); else failures=$((failures + 1)); fi
}
run_tasks fixture-direct "http://localhost:$FX/mcp"
run_tasks warden-2026-http-upstream "http://localhost:$W2/mcp"
run_tasks warden-stdio-upstream "http://localhost:$W1/mcp"
# The suite's multi round-trip scenarios through Warden in front of a native 2026-07-28 server
# written with the Python SDK (its own question keys and signed requestState): the translation
# meets a server nobody here wrote the protocol code of.
MP=$(free_port); W5=$(free_port)
start_bg "$PY" "$INTEROP/py_mrtr_2026.py" "$MP" >"$TMP/mrtr-server.log" 2>&1
wait_port "$MP" 60
sed -e "s/127.0.0.1:$W2/127.0.0.1:$W5/" -e "s|http://127.0.0.1:$FX/mcp|http://127.0.0.1:$MP/mcp|" \
    -e 's/^name = "fixture"$/name = "mrtr"/' -e 's/audit-http.db/audit-mrtr.db/' "$TMP/http.toml" > "$TMP/mrtr.toml"
start_bg "$BIN/warden" serve --config "$TMP/mrtr.toml" 2>"$TMP/warden-mrtr.log"
wait_ready "http://127.0.0.1:$W5/readyz"
grep -q 'upstream ready.*protocol=2026-07-28' "$TMP/warden-mrtr.log" || { echo "conformance: the native 2026 server is not spoken to as 2026-07-28"; exit 1; }
# The same server over stdio (a 2026-07-28 stdio upstream; the Python SDK serves either era there).
W6=$(free_port)
sed -e "s/127.0.0.1:$W5/127.0.0.1:$W6/" -e 's/^transport = "http"$/transport = "stdio"/' \
    -e "s|^url = .*|command = \"$PY\"\nargs = [\"$INTEROP/py_mrtr_2026.py\", \"--stdio\"]|" \
    -e 's/^\(client_requests = .*\)$/\1\n[upstream.sandbox]   # the interpreter may live where `nobody` cannot read\nenabled = false/' \
    -e 's/audit-mrtr.db/audit-mrtr-stdio.db/' "$TMP/mrtr.toml" > "$TMP/mrtr-stdio.toml"
start_bg "$BIN/warden" serve --config "$TMP/mrtr-stdio.toml" 2>"$TMP/warden-mrtr-stdio.log"
wait_ready "http://127.0.0.1:$W6/readyz"
grep -q 'upstream ready.*protocol=2026-07-28' "$TMP/warden-mrtr-stdio.log" || { echo "conformance: the native 2026 stdio server is not spoken to as 2026-07-28"; cat "$TMP/warden-mrtr-stdio.log"; exit 1; }
run_mrtr() { # name port
  local ok=0 n=0 sc out
  for sc in basic-elicitation basic-sampling basic-list-roots request-state multiple-input-requests multi-round \
            missing-input-response non-tool-request result-type unsupported-methods tampered-state capability-check \
            ignore-extra-params validate-input; do
    n=$((n + 1))
    out="$TMP/mrtr-$1-$sc.log"
    "$NODE22" "$CONF26" server --url "http://localhost:$2/mcp" --spec-version 2026-07-28 \
        --scenario "input-required-result-$sc" >"$out" 2>&1 || true
    if grep -q ", 0 failed" "$out"; then ok=$((ok + 1)); else cat "$out"; echo "conformance 2026-07-28: $sc through Warden to the native 2026 server ($1) FAILED"; fi
  done
  echo "conformance 2026-07-28: native 2026 upstream (Python SDK, $1) through Warden: $ok of $n multi round-trip scenarios"
  if [ "$ok" -eq "$n" ]; then passed=$((passed + 1)); else failures=$((failures + 1)); fi
}
run_mrtr http "$W5"
run_mrtr stdio "$W6"

# MCP 2026-07-28 client authorization (issue 27): Warden's upstream OAuth client
# (`warden-gateway/src/upstream/link.rs`, run by `warden-oauth-client`) against every `auth/*`
# client scenario of the revision's requirement set; each must pass.
run_client_auth() {
  local ok=0 n=0 sc out
  for sc in metadata-default metadata-var1 metadata-var2 metadata-var3 basic-cimd \
            scope-from-www-authenticate scope-from-scopes-supported scope-omitted-when-undefined scope-step-up \
            scope-retry-limit token-endpoint-auth-basic token-endpoint-auth-post token-endpoint-auth-none \
            pre-registration resource-mismatch offline-access-scope offline-access-not-supported \
            authorization-server-migration iss-supported iss-not-advertised iss-supported-missing iss-wrong-issuer \
            iss-unexpected iss-normalized metadata-issuer-mismatch; do
    n=$((n + 1))
    out="$TMP/client-auth-$sc.log"
    "$NODE22" "$CONF26" client --command "$BIN/warden-oauth-client" --scenario "auth/$sc" \
        --spec-version 2026-07-28 --timeout 30000 >"$out" 2>&1 || true
    if grep -q "OVERALL: PASSED" "$out"; then ok=$((ok + 1)); else cat "$out"; echo "conformance 2026-07-28: client auth/$sc FAILED"; fi
  done
  echo "conformance 2026-07-28: Warden's upstream OAuth client: $ok of $n client auth scenarios"
  if [ "$ok" -eq "$n" ]; then passed=$((passed + 1)); else failures=$((failures + 1)); fi
}
run_client_auth
echo "conformance: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
