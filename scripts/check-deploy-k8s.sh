#!/usr/bin/env bash
# The container and Kubernetes deployment, validated without Docker or a cluster:
#  - deploy/helm/warden rendered by Helm's own engine (helm-python-sdk: Helm's Go SDK as a
#    library), with its default values and with ci/*-values.yaml; helm lint;
#  - every rendered object against the Kubernetes JSON schemas (kubernetes-validate, strict), the
#    ServiceMonitor and PrometheusRule structurally, the PrometheusRule equal to
#    deploy/prometheus/warden-alerts.yml;
#  - checkov on the rendered chart and on the Dockerfile: no failed check (skips carry reasons);
#  - docker-compose.yml structurally, HAProxy's config with `haproxy -c`;
#  - `warden check` on deploy/compose/warden-*.toml and on every warden.toml the chart renders.
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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=mcp.example.com \
  -keyout "$OUT/tls/tls.key" -out "$OUT/tls/tls.crt" 2>/dev/null
cat "$OUT/tls/tls.crt" "$OUT/tls/tls.key" > "$OUT/tls/haproxy.pem"
# `[telemetry] metrics_addr` is new: on a build that does not know it yet, check the rest.
if grep -q 'metrics_addr' docs/config.md; then drop_metrics=0; else drop_metrics=1; fi
warden_check() { # FILE: `warden check` with the chart's absolute paths moved into $OUT
  local tmp="$OUT/check-$(basename "$1")"
  sed -e "s#/etc/warden/secrets/#$OUT/secrets/#g; s#/etc/warden/tls/#$OUT/tls/#g; s#/var/lib/warden/#$OUT/data/#g" "$1" > "$tmp"
  [ "$drop_metrics" = 0 ] || sed -i '/^metrics_addr = /d' "$tmp"
  "$WARDEN" check --config "$tmp" > "$OUT/check.log" 2>&1 || { cat "$OUT/check.log" >&2; echo "warden check failed: $1" >&2; return 1; }
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
  "$VPY" scripts/check_chart.py "$dir" deploy/prometheus/warden-alerts.yml
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
