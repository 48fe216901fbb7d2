//! The operators' console in a real browser (issue 26): headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/setup.sh`) driven by Selenium from
//! `tests/console/drive.py`, with the official Python SDK as the MCP client. The script signs
//! in, sees the upstream, switches a tool off and sees the client's call refused, approves a
//! held call and sees it complete, approves a rug-pulled definition after seeing its diff, finds
//! the call in the audit search, checks the CSP, the cookie and that a state change without
//! the CSRF token is refused, and signs out. Its screenshots go to `target/console/` (those in
//! docs/console/ were made by it).

use crate::approval::{admin_section, TOKEN};
use std::path::PathBuf;
use std::process::Command;
use warden_testkit::harness::{fixture_stdio_upstream, warden};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn an_operator_runs_the_console_in_a_real_browser() {
    let (admin_cfg, admin) = admin_section();
    let rules = "[[rule]]\nid = \"echo\"\ntools = [\"echo\"]\n\
                 [[rule]]\nid = \"rows-need-approval\"\ntools = [\"rows\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 30\n[audit]\npath = \"audit.jsonl\"\n";
    let dir = warden_testkit::harness::tempdir("console");
    let descriptions = dir.join("descriptions.json");
    std::fs::write(&descriptions, "{}").unwrap();
    let d = descriptions.display().to_string();
    let env = format!("env = {{ FIXTURE_DESCRIPTIONS = {d:?} }}\n[upstream.sandbox]\nread_only = [{d:?}]\n");
    let w = warden("", &format!("{}\n{admin_cfg}\n{rules}", fixture_stdio_upstream("fx", Some(""), &env)));
    warden_testkit::harness::wait_http(&admin);
    let console = admin.trim_end_matches("/admin").to_string();
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    let shots = root().join("target/console");
    let out = Command::new(python)
        .arg(root().join("tests/console/drive.py"))
        .args([&console, &w.url, TOKEN])
        .arg(&shots)
        .arg(&descriptions)
        .output()
        .expect("run tests/console/drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed\n{stdout}\n{stderr}\nwarden log:\n{}", w.log());
    assert!(stdout.contains("console: all checks passed"), "{stdout}");
    // Every action was recorded under the operator's name.
    let log = std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap_or_default();
    for what in ["signed_in", "\"kill_switch\"", "approved"] {
        assert!(log.contains(what) && log.contains("console:ops-alice"), "no {what} by console:ops-alice in\n{log}");
    }
}

/// A console session signed in with a principal's credential: cookie and CSRF token.
async fn sign_in(console: &str, token: &str) -> Result<(String, String), u16> {
    let r = reqwest::Client::new()
        .post(format!("{console}/console/sign-in"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    Ok((cookie, body["csrf"].as_str().unwrap().to_string()))
}

async fn with_session(
    method: reqwest::Method,
    url: &str,
    (cookie, csrf): &(String, String),
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url).header("cookie", cookie).header("x-warden-csrf", csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Issue 26: an approver signed in to the console with its own credential has exactly that
/// credential's rights: its tenant's approvals only, no kill switches; a credential without an
/// operator scope cannot sign in.
#[tokio::test]
async fn a_tenants_approver_in_the_console_sees_only_its_tenants_approvals_and_no_kill_switches() {
    use crate::authz::key;
    use reqwest::Method;
    let (admin_cfg, admin) = admin_section();
    let (alice, ea) = key("alice", &["mcp"], &[], Some("a"));
    let (bob, eb) = key("bob", &["warden:approve"], &[], Some("a"));
    let (carol, ec) = key("carol", &["warden:approve"], &[], Some("b"));
    let rules = "[[rule]]\nid = \"echo-needs-approval\"\ntools = [\"echo\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 20\n";
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden("", &format!("{up}\n[auth]\n{ea}{eb}{ec}\n{admin_cfg}\n{rules}"));
    warden_testkit::harness::wait_http(&admin);
    let console = admin.trim_end_matches("/admin").to_string();
    assert_eq!(sign_in(&console, &alice).await.err(), Some(403), "a caller without an operator scope");
    assert_eq!(sign_in(&console, "not-a-key-at-all").await.err(), Some(401));

    let c = crate::authz::client(&w, &alice).await;
    let held = tokio::spawn({
        let c = warden_testkit::harness::Client {
            session: c.session.clone(),
            bearer: c.bearer.clone(),
            ..warden_testkit::harness::Client::new(&w.url)
        };
        async move { c.tool(1, "echo", serde_json::json!({"text": "wire the money"})).await }
    });
    let bob_s = sign_in(&console, &bob).await.expect("bob signs in");
    let carol_s = sign_in(&console, &carol).await.expect("carol signs in");
    let (s, me) = with_session(Method::GET, &format!("{console}/console/session"), &bob_s, None).await;
    assert_eq!((s, me["may_operate"].as_bool(), me["tenant"].as_str()), (200, Some(false), Some("a")), "{me}");
    let id = loop {
        let (s, v) = with_session(Method::GET, &format!("{admin}/approvals?state=pending"), &bob_s, None).await;
        assert_eq!(s, 200, "{v}");
        if let Some(id) = v["approvals"][0]["id"].as_str() {
            break id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (_, v) = with_session(Method::GET, &format!("{admin}/approvals"), &carol_s, None).await;
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(0), "tenant b sees nothing of tenant a: {v}");
    let (s, _) =
        with_session(Method::POST, &format!("{admin}/approvals/{id}/approve"), &carol_s, Some(serde_json::json!({})))
            .await;
    assert_eq!(s, 404, "another tenant's approval looks like one that does not exist");
    for (method, path) in [(Method::GET, "kill-switches"), (Method::GET, "upstreams"), (Method::GET, "audit")] {
        let (s, v) = with_session(method, &format!("{admin}/{path}"), &bob_s, None).await;
        assert_eq!(s, 403, "an approver reaches no {path}: {v}");
    }
    let kill = serde_json::json!({"server": "fx", "reason": "mine now"});
    assert_eq!(with_session(Method::POST, &format!("{admin}/kill-switches"), &bob_s, Some(kill)).await.0, 403);
    let (s, v) =
        with_session(Method::POST, &format!("{admin}/approvals/{id}/approve"), &bob_s, Some(serde_json::json!({})))
            .await;
    assert_eq!(s, 200, "{v}");
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), held).await.expect("released").unwrap();
    assert_eq!(done["result"]["content"][0]["text"], "wire the money", "{done}");
}
