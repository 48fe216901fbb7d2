#!/usr/bin/env python3
"""Render deploy/helm/warden with Helm's own template engine (the Helm Go SDK through the
helm-python-sdk wheel: no helm binary needed) and write the manifests to OUT_DIR, one file per
template, plus one warden.toml per ConfigMap key under OUT_DIR/config/.

usage: render_chart.py CHART OUT_DIR [--values VALUES.yaml] [--namespace NS] [--release NAME]
"""
import argparse, os, pathlib, sys

import helm_python as helm
import yaml


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("chart")
    ap.add_argument("out")
    ap.add_argument("--values", action="append", default=[])
    ap.add_argument("--namespace", default="warden")
    ap.add_argument("--release", default="warden")
    a = ap.parse_args()
    values = {}
    for f in a.values:
        values.update(yaml.safe_load(open(f)) or {})
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config").mkdir(exist_ok=True)
    lint = helm.lint(a.chart)
    if lint.get("errors"):
        print(f"helm lint: {lint['errors']}", file=sys.stderr)
        return 1
    for m in lint.get("messages", []):
        if m.get("severity", 0) > 1:  # 1: info; 2: warning; 4: error
            print(f"helm lint: {m}", file=sys.stderr)
            return 1
    with helm.Chart.load(a.chart) as chart:
        rendered = chart.render(values, name=a.release, namespace=a.namespace)
    docs = 0
    for name, text in sorted(rendered.items()):
        if name.endswith("NOTES.txt") or not text.strip():
            continue
        path = out / pathlib.Path(name).name
        path.write_text(text)
        for d in yaml.safe_load_all(text):
            if not d:
                continue
            docs += 1
            if d.get("kind") == "ConfigMap":
                for key, toml in d.get("data", {}).items():
                    (out / "config" / key).write_text(toml)
    print(f"rendered {a.chart}: {docs} object(s) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
