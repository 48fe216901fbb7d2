#!/usr/bin/env bash
# The container and Kubernetes deployment, validated without Docker or a cluster:
#  - deploy/helm/warden rendered by Helm's own engine (helm-python-sdk: Helm's Go SDK as a
#    library), with its default values and with ci/*-values.yaml; helm lint;
#  - every rendered object against the Kubernetes JSON schemas (kubernetes-validate, strict), the
#    ServiceMonitor and PrometheusRule structurally, the PrometheusRule equal to
#    deploy/prometheus/warden-alerts.yml; the Deployment's pod (security context, probes, ports,
#    POD_NAME, --watch-config or checksum/config) and its one warden.toml (check_chart below);
#  - checkov on the rendered chart and on the Dockerfile: no failed check (skips carry reasons);
#  - docker-compose.yml structurally, HAProxy's config with `haproxy -c`;
#  - `warden check` on deploy/compose/warden-*.toml and on every warden.toml the chart renders
#    (with POD_NAME set, which names the audit chain); the audit signing key `warden pin keygen`
#    writes is the one `[audit] signing_key` loads.
# Tools go into .venv-deploy (pinned: scripts/deploy-requirements.txt), installed once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
T0=$SECONDS
VENV="$ROOT/.venv-deploy"
REQ="$ROOT/scripts/deploy-requirements.txt"
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "check-deploy: installing checkov, kubernetes-validate, helm-python-sdk into .venv-deploy"
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$want" > "$stamp"
fi
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
WARDEN="$ROOT/target/debug/warden"
[ -x "$WARDEN" ] || cargo build -p warden --locked
VPY="$VENV/bin/python"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; cleanup' EXIT

# Dummy secrets and a self-signed certificate for `warden check` (which reads every secret).
mkdir -p "$OUT/secrets" "$OUT/tls" "$OUT/data"
openssl rand -base64 32 > "$OUT/secrets/cluster-key"
openssl rand -hex 24 > "$OUT/secrets/admin-token"
for f in postgres-password redis-password tools-token; do echo dummy > "$OUT/secrets/$f"; done
# secrets.auditSigningKey holds a key as `warden pin keygen` writes it (PKCS#8 Ed25519).
audit_public=$("$WARDEN" pin keygen --out "$OUT/secrets/audit-signing-key" 2>/dev/null)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=mcp.example.com \
  -keyout "$OUT/tls/tls.key" -out "$OUT/tls/tls.crt" 2>/dev/null
cat "$OUT/tls/tls.crt" "$OUT/tls/tls.key" > "$OUT/tls/haproxy.pem"
# `[telemetry] metrics_addr` is new: on a build that does not know it yet, check the rest.
if grep -q 'metrics_addr' docs/config.md; then drop_metrics=0; else drop_metrics=1; fi
warden_check() { # FILE: `warden check` with the chart's absolute paths moved into $OUT
  local tmp="$OUT/check-$(basename "$1")"
  sed -e "s#/etc/warden/secrets/#$OUT/secrets/#g; s#/etc/warden/tls/#$OUT/tls/#g; s#/var/lib/warden/#$OUT/data/#g" "$1" > "$tmp"
  [ "$drop_metrics" = 0 ] || sed -i '/^metrics_addr = /d' "$tmp"
  POD_NAME=warden-6d9c7f8b4-x2kqz "$WARDEN" check --config "$tmp" > "$OUT/check.log" 2>&1 \
    || { cat "$OUT/check.log" >&2; echo "warden check failed: $1" >&2; return 1; }
  if grep -q '^instance = { env = "POD_NAME" }' "$tmp" && ! grep -q '(chain warden-6d9c7f8b4-x2kqz,' "$OUT/check.log"; then
    cat "$OUT/check.log" >&2; echo "$1: the audit chain is not named after POD_NAME" >&2; return 1
  fi
  if grep -q "^signing_key = \"$OUT/secrets/audit-signing-key\"" "$tmp"; then
    local pk; pk=$(POD_NAME=x "$WARDEN" audit public-key --config "$tmp")
    [ "$pk" = "$audit_public" ] || { echo "$1: [audit] signing_key does not load the key warden pin keygen wrote" >&2; return 1; }
  fi
}

# What the Kubernetes schemas do not cover (RENDER_DIR ALERTS_FILE): the two monitoring.coreos.com/v1
# objects, the PrometheusRule equal to the alert rules file (one source), the Deployment's pod
# (security context, probes, ports, POD_NAME, --watch-config xor checksum/config) and the one
# warden.toml every pod shares.
check_chart() {
  "$VPY" - "$@" <<'PY'
import pathlib, sys

import yaml


def fail(msg):
    sys.exit(f"check_chart: {msg}")


out, alerts = pathlib.Path(sys.argv[1]), sys.argv[2]
objs = [d for f in sorted(out.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
by_kind = {}
for o in objs:
    for k in ("apiVersion", "kind", "metadata"):
        if k not in o:
            fail(f"object without {k}: {o}")
    by_kind.setdefault(o["kind"], []).append(o)
if "StatefulSet" in by_kind or len(by_kind.get("Deployment", [])) != 1:
    fail(f"expected one Deployment and no StatefulSet: {sorted(by_kind)}")
dep = by_kind["Deployment"][0]
name = dep["metadata"]["name"]
if dep["spec"]["strategy"]["type"] != "RollingUpdate":
    fail("the Deployment's strategy is not RollingUpdate")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
sc = c["securityContext"]
want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
for k, v in want.items():
    if sc.get(k) != v:
        fail(f"container securityContext.{k} is {sc.get(k)!r}, not {v!r}")
if sc["capabilities"]["drop"] != ["ALL"] or pod["securityContext"]["seccompProfile"]["type"] != "RuntimeDefault":
    fail("capabilities must drop ALL and the seccomp profile be RuntimeDefault")
if pod["securityContext"].get("runAsUser") != 65532:
    fail("the pod must run as uid 65532")
if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
    fail("liveness must be /healthz and readiness /readyz")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
if ports.get("metrics") != 9464:
    fail(f"metrics port {ports}")
env = {e["name"]: e for e in c.get("env", [])}
if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
    fail("no POD_NAME from metadata.name ([audit] instance)")
args = c["args"]
if args[:3] != ["serve", "--config", "/etc/warden/config/warden.toml"]:
    fail(f"args {args}")
# In-place reload (--watch-config) or a roll on every change (checksum/config): one of the two.
rolls = "checksum/config" in (dep["spec"]["template"]["metadata"].get("annotations") or {})
if rolls == ("--watch-config" in args):
    fail(f"--watch-config in args: {'--watch-config' in args}; checksum/config annotation: {rolls}")
# The one config every pod shares, its chain named after the pod.
cm = by_kind["ConfigMap"][0]["data"]
if sorted(cm) != ["warden.toml"]:
    fail(f"ConfigMap keys {sorted(cm)}: expected warden.toml alone")
if 'instance = { env = "POD_NAME" }' not in cm["warden.toml"]:
    fail('warden.toml: [audit] instance is not { env = "POD_NAME" }')
hpa = by_kind.get("HorizontalPodAutoscaler")
if hpa:
    ref = hpa[0]["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) != ("Deployment", name):
        fail(f"the HPA targets {ref}")
    kinds = {m["type"] for m in hpa[0]["spec"]["metrics"]}
    if "Resource" not in kinds:
        fail("the HPA has no CPU fallback")
if any(s["spec"].get("clusterIP") == "None" for s in by_kind["Service"]):
    fail("a headless Service is left")
# monitoring.coreos.com/v1, structurally.
for sm in by_kind.get("ServiceMonitor", []):
    ep = sm["spec"]["endpoints"]
    if sm["apiVersion"] != "monitoring.coreos.com/v1" or not sm["spec"]["selector"]["matchLabels"]:
        fail("ServiceMonitor: apiVersion or selector")
    if [(e["port"], e["path"]) for e in ep] != [("metrics", "/metrics")]:
        fail(f"ServiceMonitor endpoints {ep}")
    svc_ports = {p["name"] for s in by_kind["Service"] for p in s["spec"]["ports"]}
    if "metrics" not in svc_ports:
        fail("no Service port named metrics")
for pr in by_kind.get("PrometheusRule", []):
    src = yaml.safe_load(open(alerts))
    if pr["apiVersion"] != "monitoring.coreos.com/v1" or pr["spec"]["groups"] != src["groups"]:
        fail(f"PrometheusRule groups differ from {alerts}")
    for g in pr["spec"]["groups"]:
        for r in g["rules"]:
            if not ("alert" in r or "record" in r) or "expr" not in r:
                fail(f"PrometheusRule rule {r}")
print(f"chart objects: {len(objs)} ({', '.join(sorted(by_kind))}); {len(cm)} warden.toml")
PY
}

# 1. The chart, rendered with its defaults and with each ci/*-values.yaml.
CHART=deploy/helm/warden
renders=("default:")
for v in "$CHART"/ci/*-values.yaml; do renders+=("$(basename "$v" -values.yaml):$v"); done
configs=0
for r in "${renders[@]}"; do
  name=${r%%:*} values=${r#*:}
  dir="$OUT/render-$name"
  "$VPY" scripts/render_chart.py "$CHART" "$dir" ${values:+--values "$values"} 2>"$OUT/render.log" \
    || { cat "$OUT/render.log" >&2; exit 1; }
  # Strict: unknown fields are errors. The two CRDs have no schema there (checked below).
  "$VENV/bin/kubernetes-validate" --strict --quiet "$dir"/*.yaml >"$OUT/kv.log" 2>&1 || { cat "$OUT/kv.log" >&2; exit 1; }
  if grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\) " "$OUT/kv.log" | grep -q .; then
    cat "$OUT/kv.log" >&2; exit 1
  fi
  check_chart "$dir" deploy/prometheus/warden-alerts.yml
  "$VENV/bin/checkov" -d "$dir" --framework kubernetes --compact --quiet --skip-download > "$OUT/checkov.log" 2>&1 \
    || { cat "$OUT/checkov.log" >&2; echo "checkov: failed checks on the chart ($name)" >&2; exit 1; }
  echo "chart ($name): $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$OUT/checkov.log") (checkov)"
  for f in "$dir"/config/*.toml; do warden_check "$f"; configs=$((configs + 1)); done
done

# 2. The image.
"$VENV/bin/checkov" -f Dockerfile --framework dockerfile --compact --quiet --skip-download > "$OUT/checkov.log" 2>&1 \
  || { cat "$OUT/checkov.log" >&2; echo "checkov: failed checks on the Dockerfile" >&2; exit 1; }
echo "Dockerfile: $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$OUT/checkov.log") (checkov)"

# 3. docker-compose.yml and HAProxy.
"$VPY" scripts/check_compose.py docker-compose.yml
sed "s#/usr/local/etc/haproxy/certs/haproxy.pem#$OUT/tls/haproxy.pem#" deploy/compose/haproxy.cfg > "$OUT/haproxy.cfg"
haproxy -c -q -f "$OUT/haproxy.cfg"
export WARDEN_CLUSTER_KEY; WARDEN_CLUSTER_KEY=$(cat "$OUT/secrets/cluster-key")
export WARDEN_ADMIN_TOKEN; WARDEN_ADMIN_TOKEN=$(cat "$OUT/secrets/admin-token")
export REDIS_PASSWORD=dummy PGPASSWORD=dummy UPSTREAM_TOKEN=dummy
for f in deploy/compose/warden-*.toml; do warden_check "$f"; configs=$((configs + 1)); done
note=""; [ "$drop_metrics" = 0 ] || note=" (without [telemetry] metrics_addr: this build does not know it yet)"
echo "warden check: $configs config(s) ok$note"
echo "check-deploy-k8s: ok in $((SECONDS - T0))s"
