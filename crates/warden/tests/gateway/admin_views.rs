//! The admin API's read-only views: `GET /admin/config` (the effective config, secrets masked,
//! with what `warden check` finds) and `GET /admin/audit/verify` (the trail's chains and signed
//! checkpoints verified, a tampered record found); both for operators only.

use crate::approval::{admin_section, TOKEN};
use crate::authz::key;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_testkit::harness::{fixture_stdio_upstream, free_port, tempdir, wait_http, warden_config, Proc};

async fn get(url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The API keys of the test: an operator, an operator bound to a tenant, an approver and a
/// plain caller.
struct Keys {
    operator: String,
    tenant_operator: String,
    approver: String,
    caller: String,
    entries: String,
}

fn keys() -> Keys {
    let (operator, a) = key("ops", &["mcp", "warden:admin"], &[], None);
    let (tenant_operator, b) = key("tenant-ops", &["mcp", "warden:admin"], &[], Some("t1"));
    let (approver, c) = key("approver", &["mcp", "warden:approve"], &[], None);
    let (caller, d) = key("caller", &["mcp"], &[], None);
    Keys { operator, tenant_operator, approver, caller, entries: format!("{a}{b}{c}{d}") }
}

/// A Warden with an admin listener, API keys, and a JSONL audit trail whose checkpoint key is
/// pinned (as an operator pins it: `warden audit public-key`); its admin base URL. The
/// upstream's settings end with `extra`, which may name files in the Warden's directory
/// (`files`: written first).
fn start(k: &Keys, extra: &str, files: &[(&str, &str)]) -> (Proc, String) {
    let dir = tempdir("admin-views");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let cfg = dir.join("warden.toml");
    let port = free_port();
    let (admin_cfg, admin) = admin_section();
    let base = format!(
        "[listen]\naddr = \"127.0.0.1:{port}\"\n{}\n[auth]\n{}\n{admin_cfg}\n\
         [[rule]]\nid = \"all\"\ntools = [\"*\"]\n",
        fixture_stdio_upstream("fx", Some(""), extra),
        k.entries
    );
    std::fs::write(&cfg, format!("{base}[audit]\npath = \"audit.jsonl\"\n")).unwrap();
    let public_key = crate::audit::public_key(&cfg.display().to_string());
    std::fs::write(&cfg, format!("{base}[audit]\npath = \"audit.jsonl\"\npublic_key = {public_key:?}\n")).unwrap();
    let w = warden_config(&cfg, port);
    wait_http(&admin);
    (w, admin)
}

/// Only an operator without a tenant sees either view: no credential gets 401, a tenant's
/// operator, an approver and a plain caller 403.
#[tokio::test]
async fn the_views_are_for_operators_only() {
    let k = keys();
    let (_w, admin) = start(&k, "", &[]);
    for path in ["config", "audit/verify"] {
        let url = format!("{admin}/{path}");
        assert_eq!(get(&url, None).await.0, 401, "{path}");
        assert_eq!(get(&url, Some("not-a-credential")).await.0, 401, "{path}");
        for (who, cred) in [("tenant operator", &k.tenant_operator), ("approver", &k.approver), ("caller", &k.caller)] {
            let (s, v) = get(&url, Some(cred)).await;
            assert_eq!(s, 403, "{who} on {path}: {v}");
        }
        let (s, v) = get(&url, Some(&k.operator)).await;
        assert_eq!(s, 200, "the operator on {path}: {v}");
    }
}

/// `GET /admin/config`: the running config with its defaults, every secret masked (the admin
/// token's reference, not the token; the API keys' hashes not shown), and the check's findings:
/// a secret that no longer resolves is named (not its value) and fails the check; after a
/// reload, the new generation's config and its check.
#[tokio::test]
async fn the_effective_config_is_shown_masked_with_the_checks_findings() {
    const UPSTREAM_SECRET: &str = "upstream-secret-value-6a1f93";
    let k = keys();
    let extra = "secret_env = { FIXTURE_TOKEN = { file = \"up.token\" } }\n";
    let (w, admin) = start(&k, extra, &[("up.token", UPSTREAM_SECRET)]);
    let cfg_path = w.dir.join("warden.toml");
    // The secret file goes away while Warden runs: the check names the reference that fails.
    std::fs::remove_file(w.dir.join("up.token")).unwrap();
    let (s, v) = get(&format!("{admin}/config"), Some(TOKEN)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["generation"], 0);
    let cfg = &v["config"];
    assert!(cfg["admin"]["token"]["file"].as_str().is_some_and(|f| f.contains("warden-admin-token")), "{cfg}");
    let up = &cfg["upstream"][0];
    assert_eq!(up["name"], "fx");
    assert_eq!(up["secret_env"]["FIXTURE_TOKEN"], json!({"file": w.dir.join("up.token").display().to_string()}));
    assert_eq!(cfg["listen"]["max_body_bytes"], 4 << 20, "defaults applied");
    assert_eq!(cfg["audit"]["checkpoint_every"], 10_000);
    let api_keys = cfg["auth"]["api_key"].as_array().unwrap();
    assert_eq!(api_keys.len(), 4);
    assert!(api_keys.iter().all(|a| a["hash"] == "***"), "{cfg}");
    let check = &v["check"];
    assert_eq!((check["ok"].as_bool(), check["generation"].as_u64()), (Some(false), Some(0)), "{check}");
    let lines = check["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "the checks stop at the first error: {check}");
    assert_eq!(lines[0]["level"], "error");
    let text = lines[0]["text"].as_str().unwrap();
    assert!(text.contains("upstream \"fx\".secret_env.FIXTURE_TOKEN: secret file "), "{text}");
    let no_secret = |v: &Value| {
        let text = v.to_string();
        assert!(!text.contains(TOKEN), "the admin token is shown");
        assert!(!text.contains(UPSTREAM_SECRET), "the upstream's secret is shown");
        let file = std::fs::read_to_string(&cfg_path).unwrap();
        for hash in file.lines().filter_map(|l| l.strip_prefix("hash = \"sha256:")) {
            assert!(!text.contains(hash.trim_end_matches('"')), "an API key's hash is shown");
        }
        for secret in [&k.operator, &k.tenant_operator, &k.approver, &k.caller] {
            assert!(!text.contains(secret.as_str()), "an API key is shown");
        }
    };
    no_secret(&v);

    // The secret back, a rule added, the config reloaded: the new generation and its check.
    std::fs::write(w.dir.join("up.token"), UPSTREAM_SECRET).unwrap();
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, format!("{text}\n[[rule]]\nid = \"second\"\ntools = [\"echo\"]\n")).unwrap();
    let r = reqwest::Client::new().post(format!("{admin}/reload")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (s, v) = get(&format!("{admin}/config"), Some(&k.operator)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["config"]["rule"].as_array().map(Vec::len), Some(2), "{v}");
    let check = &v["check"];
    assert_eq!((check["ok"].as_bool(), check["generation"].as_u64()), (Some(true), Some(1)), "{check}");
    let lines = check["lines"].as_array().unwrap();
    let level_of = |prefix: &str| {
        lines.iter().find(|l| l["text"].as_str().is_some_and(|t| t.starts_with(prefix))).map(|l| l["level"].clone())
    };
    assert_eq!(level_of(&format!("{}: ok (1 upstream(s))", cfg_path.display())), Some(json!("ok")), "{check}");
    assert_eq!(level_of("upstream fx: sandbox on this machine: "), Some(json!("ok")), "{check}");
    // The fixture's sandbox leaves `strict` unset: advice, without the CLI's prefix.
    assert_eq!(level_of("upstream fx: [upstream.sandbox] strict is not set"), Some(json!("warning")), "{check}");
    assert_eq!(level_of("authorization: 2 allow rule(s)"), Some(json!("ok")), "{check}");
    assert!(lines.iter().all(|l| ["ok", "warning"].contains(&l["level"].as_str().unwrap())), "{check}");
    assert_eq!(check["cached"], false);
    no_secret(&v);
    // Asked again: the same result, without running the sandbox helper again.
    let (_, again) = get(&format!("{admin}/config"), Some(TOKEN)).await;
    assert_eq!((again["check"]["cached"].as_bool(), &again["check"]["lines"]), (Some(true), &check["lines"]));
}

/// `GET /admin/audit/verify` says the trail verifies, with its chain's records and last signed
/// checkpoint; a record edited on disk is found (`fresh=1`), and named.
#[tokio::test]
async fn the_audit_trail_verifies_and_a_tampered_record_is_found() {
    let k = keys();
    let (w, admin) = start(&k, "", &[]);
    let c = crate::authz::client(&w, &k.caller).await;
    for i in 0..5 {
        let v = c.tool(10 + i, "echo", json!({"text": format!("call {i}")})).await;
        assert_eq!(v["result"]["content"][0]["text"], format!("call {i}"), "{v}");
    }
    let url = format!("{admin}/audit/verify");
    let trail = w.dir.join("audit.jsonl");
    let lines = || std::fs::read_to_string(&trail).unwrap().lines().count() as u64;
    // The calls' records reach the trail (a moment after their answers when acknowledged from
    // the journal).
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (s, v) = get(&format!("{url}?fresh=1"), Some(&k.operator)).await;
        assert_eq!(s, 200, "{v}");
        if v["records"].as_u64().is_some_and(|n| n >= 6) || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(2100)).await;
    };
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["key_pinned"], true);
    assert!(v["verified_at"].as_u64().is_some_and(|t| t > 1_700_000_000), "{v}");
    let chain = &v["chains"][0];
    assert_eq!(chain["name"], "warden", "{v}");
    let records = chain["records"].as_u64().unwrap();
    assert!(records >= 6 && records <= lines(), "{records} of {} in the file: {v}", lines());
    assert!(chain["checkpoints"].as_u64().is_some_and(|n| n >= 1), "the start checkpoint: {v}");
    assert!(chain["last_checkpoint_at"].as_u64().is_some_and(|t| t > 1_700_000_000), "{v}");
    // Asked again without `fresh`: the kept result.
    let (_, again) = get(&url, Some(&k.operator)).await;
    assert_eq!((again["cached"].as_bool(), &again["verified_at"]), (Some(true), &v["verified_at"]));

    // A call's record edited on disk (its status).
    let text = std::fs::read_to_string(&trail).unwrap();
    let line = text.lines().find(|l| l.contains("\"kind\":\"call\"") && l.contains("\"status\":\"success\"")).unwrap();
    let seq = serde_json::from_str::<Value>(line).unwrap()["seq"].as_u64().unwrap();
    std::fs::write(&trail, text.replacen(line, &line.replace("\"status\":\"success\"", "\"status\":\"timeout\""), 1))
        .unwrap();
    // The kept result still says ok; a fresh verification finds the edit.
    assert_eq!(get(&url, Some(&k.operator)).await.1["ok"], true);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = get(&format!("{url}?fresh=1"), Some(&k.operator)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["ok"].as_bool(), v["cached"].as_bool()), (Some(false), Some(false)), "{v}");
    let problems: Vec<&str> = v["problems"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        problems.iter().any(|p| p.contains(&format!("chain warden seq {seq}")) && p.contains("edited")),
        "seq {seq}: {problems:?}"
    );
    assert_eq!(get(&format!("{url}?fresh=maybe"), Some(&k.operator)).await.0, 400);
}
