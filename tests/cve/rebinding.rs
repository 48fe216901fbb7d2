//! DNS rebinding against local MCP servers: the MCP Inspector (CVE-2025-49596: a proxy on
//! loopback with no authentication, driven from a web page) and the SDKs' Streamable HTTP
//! servers that did not check `Host` (TypeScript CVE-2025-66414, Python CVE-2025-66416, rmcp
//! CVE-2026-42559). A page on `attacker.example` whose name rebinds to 127.0.0.1 makes the
//! browser send `Host: attacker.example:PORT` (and its own `Origin`). Warden checks `Host` and
//! `Origin` on `/mcp` and on the admin listener before anything else (403), and refuses to bind
//! a non-loopback address without authentication.
//!
//! Not audited: these requests are refused before any identity is known, and a record per
//! refused request would let anyone on the network fill the trail.

use crate::common::*;
use serde_json::json;
use warden_testkit::harness::{bin, free_port, init_params, vulnerable_http, warden};

#[tokio::test]
async fn dns_rebinding_and_unauthenticated_exposure_are_refused() {
    let d = dir("rebind");
    let log = d.join("calls.jsonl");
    let up = vulnerable_http(&[("VULN_ROOT", "/"), ("VULN_LOG", &log.display().to_string())]);
    let admin_port = free_port();
    let token_file = d.join("admin-token");
    std::fs::write(&token_file, "a-long-admin-token-for-the-cve-suite-0123456789").unwrap();
    let admin = format!(
        "[admin]\naddr = \"127.0.0.1:{admin_port}\"\ntoken = {{ file = {:?} }}\n",
        token_file.display().to_string()
    );
    let w = warden("", &format!("{}{admin}", http_upstream("vuln", &up.url, "")));
    let port = w.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init_params()});
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/etc/hostname"}}});
    let post = |host: String, origin: Option<String>, body: serde_json::Value| {
        let mut rb = http
            .post(&w.url)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        rb.send()
    };
    let evil = format!("attacker.example:{port}");
    for (host, origin, body) in [
        (evil.clone(), None, &init),
        (evil.clone(), Some(format!("http://{evil}")), &call),
        (format!("127.0.0.1:{port}"), Some(format!("http://{evil}")), &init),
        (format!("localhost:{port}"), Some("null".to_string()), &init),
    ] {
        let r = post(host.clone(), origin.clone(), body.clone()).await.unwrap();
        assert_eq!(r.status(), 403, "Host {host}, Origin {origin:?}");
    }
    let r = http.get(&w.url).header("host", &evil).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(r.status(), 403);
    // The admin listener: a rebinding page cannot flip kill switches or approve calls either.
    let r = http
        .get(format!("http://127.0.0.1:{admin_port}/admin/kill-switches"))
        .header("host", format!("attacker.example:{admin_port}"))
        .bearer_auth("a-long-admin-token-for-the-cve-suite-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The same requests from a local page (Origin on loopback, as the Inspector's own UI) work,
    // so the check above is the Host/Origin check and nothing else.
    let r = post(format!("localhost:{port}"), Some("http://localhost:6274".into()), init.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(received(&log).is_empty(), "no refused request reached the upstream");
    assert_eq!(records(&w, &["--kind", "initialize"]).len(), 1, "only the accepted initialize is recorded");

    // The Inspector's other half: a network-reachable listener without authentication is
    // refused at configuration time.
    let cfg = d.join("open.toml");
    std::fs::write(
        &cfg,
        format!("[listen]\naddr = \"0.0.0.0:{}\"\n{}", free_port(), http_upstream("vuln", &up.url, "")),
    )
    .unwrap();
    let o = std::process::Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("refusing to bind non-loopback"));
}
