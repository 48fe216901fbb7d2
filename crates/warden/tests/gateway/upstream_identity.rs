//! Issue 27: an upstream that acts on each user's own account gets each caller's identity, not
//! Warden's: `[upstream.oauth] mode = "exchange"` exchanges the caller's validated token (RFC
//! 8693) at the upstream's authorization server for a token for that upstream, cached per
//! caller. Here the upstream is a second Warden (B) that trusts the IdP's tokens and logs who
//! called; the IdP implements the exchange (`warden-testkit`'s `idp.rs`).

use serde_json::json;
use std::sync::atomic::Ordering;
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client};
use warden_testkit::idp::Idp;

#[tokio::test]
async fn each_caller_reaches_the_upstream_as_itself_through_token_exchange() {
    let idp = Idp::start().await;
    // B: the upstream, accepting only the IdP's tokens issued for it.
    let b = warden(
        "",
        &format!(
            "{}\n[auth]\nrequired_scopes = [\"mcp\"]\n[[auth.jwt]]\nissuer = {:?}\n",
            fixture_stdio_upstream("fx", Some(""), ""),
            idp.issuer
        ),
    );
    // A: in front of B, with callers of the same IdP (and an API key, which has no token to
    // exchange).
    let (key, entry) = warden_gateway::auth::apikey::generate("svc", &["mcp".into()], None, None);
    let a = warden(
        "",
        &format!(
            "{}\n[auth]\nrequired_scopes = [\"mcp\"]\n{entry}\n[[auth.jwt]]\nissuer = {:?}\n\
             [audit]\npath = \"audit.jsonl\"\n",
            crate::auth::upstream_b(&idp, &b, "exchange"),
            idp.issuer
        ),
    );
    let token_for = |sub: &str| {
        let mut c = idp.claims(&a.url, "mcp");
        c.insert("sub".into(), sub.into());
        idp.sign_ed(&c, Some("ed1"))
    };
    for who in ["alice", "bob"] {
        let mut c = Client::new(&a.url);
        c.bearer = Some(token_for(who));
        c.initialize().await;
        for i in 0..3 {
            let r = c.tool(i, "echo", json!({"text": format!("{who} {i}")})).await;
            assert_eq!(r["result"]["content"][0]["text"], format!("{who} {i}"), "{r}");
        }
    }
    let log = b.log();
    assert!(log.contains("subject=alice") && log.contains("subject=bob"), "B saw each caller as itself:\n{log}");
    // One exchange per caller: the exchanged token served all of its calls.
    assert_eq!(idp.state.exchanges.load(Ordering::SeqCst), 2);
    // The callers' own tokens never reached B.
    assert!(!log.contains(&token_for("alice")[..40]));
    // A caller without a token to exchange (an API key) is not let through as Warden.
    let mut c = Client::new(&a.url);
    c.bearer = Some(key);
    c.initialize().await;
    let r = c.tool(1, "echo", json!({"text": "as whom?"})).await;
    assert!(r.get("error").is_some() || r["result"]["isError"] == true, "{r}");
    assert_eq!(idp.state.exchanges.load(Ordering::SeqCst), 2);
    // Each call's record names the credential that reached B (a digest, never the token).
    let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
    let calls: Vec<serde_json::Value> = trail
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "call" && e["name"] == "echo" && e["status"] == "success")
        .collect();
    assert_eq!(calls.len(), 6, "{trail}");
    for e in &calls {
        let cred = e["credential"].as_str().unwrap_or_default();
        assert!(cred.starts_with("exchange:") && cred.len() == "exchange:".len() + 12, "{e}");
    }
    let of = |who: &str| calls.iter().find(|e| e["subject"] == who).map(|e| e["credential"].clone());
    assert_ne!(of("alice"), of("bob"), "each caller its own credential");
    assert!(!trail.contains(&token_for("bob")[..40]));
}
