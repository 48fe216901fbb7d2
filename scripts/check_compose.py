#!/usr/bin/env python3
"""docker-compose.yml, structurally (`docker compose config` needs Docker): every service has an
image or a build, the Wardens mount their own config, share one cluster key variable and have a
unique [audit] instance, HAProxy checks GET /healthz on each of them and has the address the
Wardens trust, Redis and PostgreSQL have health checks, and no secret value is inline.

usage: check_compose.py docker-compose.yml
"""
import pathlib, re, sys, tomllib

import yaml


def fail(msg):
    sys.exit(f"check_compose: {msg}")


path = pathlib.Path(sys.argv[1])
root = path.parent
c = yaml.safe_load(path.read_text())  # resolves the x-warden anchor and << merges
svcs = c["services"]
for name, s in svcs.items():
    if "image" not in s and "build" not in s:
        fail(f"{name}: no image or build")
    for k, v in (s.get("environment") or {}).items():
        if not re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}|warden", str(v)):
            fail(f"{name}: environment {k} is not a reference to .env")
    for n in s.get("networks", []) if isinstance(s.get("networks"), list) else s.get("networks", {}):
        if n not in c["networks"]:
            fail(f"{name}: unknown network {n}")
wardens = sorted(n for n in svcs if n.startswith("warden-"))
if len(wardens) != 3:
    fail(f"expected three Wardens, found {wardens}")
instances = set()
haproxy_ip = svcs["haproxy"]["networks"]["warden"]["ipv4_address"]
for w in wardens:
    s = svcs[w]
    if s.get("read_only") is not True or s.get("cap_drop") != ["ALL"]:
        fail(f"{w}: not read_only with all capabilities dropped")
    mount = next(v for v in s["volumes"] if v.endswith(":/etc/warden/warden.toml:ro"))
    cfg = tomllib.loads((root / mount.split(":")[0]).read_text())
    instances.add(cfg["audit"]["instance"])
    if cfg["cluster"]["key"] != {"env": "WARDEN_CLUSTER_KEY"} or "WARDEN_CLUSTER_KEY" not in s["environment"]:
        fail(f"{w}: [cluster] key must come from WARDEN_CLUSTER_KEY")
    if cfg["listen"]["trusted_proxies"] != [haproxy_ip]:
        fail(f"{w}: trusted_proxies {cfg['listen']['trusted_proxies']} is not HAProxy's {haproxy_ip}")
    if cfg["store"]["url"] != "redis://redis:6379/0" or not cfg["audit"]["url"].startswith("postgres://warden@postgres:5432/"):
        fail(f"{w}: store or audit does not point at the compose Redis and PostgreSQL")
if len(instances) != 3:
    fail(f"[audit] instance must differ per replica: {instances}")
hcfg = (root / "deploy/compose/haproxy.cfg").read_text()
if "balance roundrobin" not in hcfg or "http-check send meth GET uri /healthz" not in hcfg:
    fail("haproxy.cfg: not round-robin with GET /healthz checks")
for w in wardens:
    if not re.search(rf"^\s*server {w} {w}:8080\b", hcfg, re.M):
        fail(f"haproxy.cfg: no server line for {w}")
for s in ("redis", "postgres", "haproxy"):
    if "healthcheck" not in svcs[s]:
        fail(f"{s}: no healthcheck")
print(f"docker-compose.yml: {len(svcs)} services ({', '.join(svcs)}), {len(instances)} audit chains")
