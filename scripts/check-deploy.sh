#!/usr/bin/env bash
# Validate deploy/: the Prometheus alert rules (promtool check + unit tests), the Grafana
# dashboard JSON, and that every metric they use is one Warden exports; then the container and
# Kubernetes deployment without Docker or a cluster (scripts/check-deploy-k8s.sh): the Helm
# chart rendered by Helm's engine, every object against the Kubernetes schemas, checkov on the
# chart and the Dockerfile, docker-compose.yml and HAProxy's config, and `warden check` on
# every shipped Warden config.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
promtool check rules deploy/prometheus/warden-alerts.yml
(cd deploy/prometheus && promtool test rules warden-alerts.test.yml)
python3 - <<'PY'
import json, re, sys
dash = json.load(open("deploy/grafana/warden-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
text = "\n".join(exprs) + open("deploy/prometheus/warden-alerts.yml").read()
src = open("crates/warden-gateway/src/metrics.rs").read()
registered = set(re.findall(r'r\.register\(\s*"([a-z_]+)"', src))
used = set(re.findall(r"\bwarden_([a-z_]+)", text))
missing = []
for u in sorted(used):
    base = re.sub(r"_(total|bucket|sum|count)$", "", u)
    if base not in registered and u not in registered:
        missing.append(u)
if missing:
    sys.exit(f"deploy/ uses metrics Warden does not export: {missing}")
print(f"dashboard: {len(dash['panels'])} panels; {len(used)} metric names, all exported")
PY
bash scripts/check-deploy-k8s.sh
