#!/usr/bin/env python3
"""Checks on a rendered Warden chart (scripts/check-deploy-k8s.sh) that the Kubernetes schemas do
not cover: the two monitoring.coreos.com/v1 objects, the PrometheusRule equal to the alert rules
file (one source), the pod's security context, probes, ports, and one warden.toml per replica.

usage: check_chart.py RENDER_DIR ALERTS_FILE
"""
import pathlib, sys

import yaml


def fail(msg):
    sys.exit(f"check_chart: {msg}")


def main():
    out, alerts = pathlib.Path(sys.argv[1]), sys.argv[2]
    objs = [d for f in sorted(out.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    by_kind = {}
    for o in objs:
        for k in ("apiVersion", "kind", "metadata"):
            if k not in o:
                fail(f"object without {k}: {o}")
        by_kind.setdefault(o["kind"], []).append(o)
    sts = by_kind["StatefulSet"][0]
    pod = sts["spec"]["template"]["spec"]
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
    if "checksum/config" not in sts["spec"]["template"]["metadata"].get("annotations", {}):
        fail("no checksum/config annotation on the pod template")
    # One config per possible replica, named after the pod.
    cm = by_kind["ConfigMap"][0]["data"]
    hpa = by_kind.get("HorizontalPodAutoscaler")
    n = hpa[0]["spec"]["maxReplicas"] if hpa else sts["spec"]["replicas"]
    name = sts["metadata"]["name"]
    if sorted(cm) != sorted(f"{name}-{i}.toml" for i in range(n)):
        fail(f"ConfigMap keys {sorted(cm)} are not one per replica 0..{n - 1}")
    for k, v in cm.items():
        if f'instance = "{k[:-5]}"' not in v:
            fail(f"{k}: [audit] instance is not the pod name")
    if hpa:
        kinds = {m["type"] for m in hpa[0]["spec"]["metrics"]}
        if "Resource" not in kinds:
            fail("the HPA has no CPU fallback")
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


main()
