//! Issue 23: the built-in authorization server of three Wardens behind HAProxy (round-robin per
//! request, no stickiness) sharing one Redis is one server. The registration, the consent page,
//! the consent form, the code and each refresh land on different replicas; single use, reuse
//! detection, family revocation and login lockout hold across them. On per-process state the
//! second step already fails (the replica showing the consent page does not know the client).

use crate::auth::builtin::{self, get, As};
use serde_json::{json, Value};
use warden_testkit::harness::{self, fixture_stdio_upstream, warden, Client, Proc};

const PASSWORD: &str = "correct horse battery";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn port_of(w: &Proc) -> u16 {
    w.url.rsplit(':').next().and_then(|p| p.trim_end_matches("/mcp").parse().ok()).unwrap()
}

/// A fresh consent page for `client` through the proxy; the PKCE verifier.
async fn page(a: &As, client: &str) -> (reqwest::Response, String) {
    let (verifier, challenge) = builtin::pkce();
    let q = [
        ("response_type", "code".to_string()),
        ("client_id", client.to_string()),
        ("redirect_uri", REDIRECT.to_string()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_string()),
        ("scope", "mcp".to_string()),
        ("state", "s1".to_string()),
    ];
    let r = a.authorize(&q).await;
    assert_eq!(r.status(), 200, "the consent page for a client registered on another replica");
    (r, verifier)
}

async fn refresh(a: &As, client: &str, token: &str) -> (u16, Value) {
    a.token(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", client)]).await
}

#[tokio::test]
async fn the_builtin_authorization_server_is_one_across_replicas() {
    let redis = harness::redis_server();
    let secrets = harness::tempdir("as-cluster");
    let key_file = secrets.join("cluster.key");
    std::fs::write(&key_file, "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=\n").unwrap();
    let store = format!(
        "[store]\nbackend = \"redis\"\nurl = {:?}\nprefix = \"as{}\"\n[cluster]\nkey = {{ file = {:?} }}\n",
        redis.url,
        std::process::id(),
        key_file.display().to_string()
    );
    let first = builtin::start_with(&format!("max_failed_logins = 3\n{store}"));
    // The others share its signing key and users file (a secret and a config map in Kubernetes).
    let data = first.w.dir.join("warden-data");
    let shared = format!(
        "key_file = {:?}\nusers_file = {:?}\nmax_failed_logins = 3\n{store}",
        data.join("signing-key.pk8").display().to_string(),
        data.join("users.toml").display().to_string(),
    );
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let config =
        format!("{up}\n[auth]\nrequired_scopes = [\"mcp\"]\n[auth.builtin]\nscopes = [\"mcp\", \"admin\"]\n{shared}");
    let mut ws = vec![first.w, warden("", &config), warden("", &config)];
    let lb = harness::haproxy(&ws.iter().map(|w| format!("127.0.0.1:{}", port_of(w))).collect::<Vec<_>>());
    let a = As { w: ws.remove(0), base: lb.url.trim_end_matches("/mcp").to_string(), http: first.http };
    let all = |a: &As, ws: &[Proc]| [a.w.log(), ws[0].log(), ws[1].log()];

    // Register, show the consent page, post it: three requests, three replicas.
    let client = a.register(REDIRECT).await;
    let (p, verifier) = page(&a, &client).await;
    let (status, q) = a.consent(p, "alice", PASSWORD, "approve").await;
    assert_eq!(status, 303);
    let code = get(&q, "code").unwrap_or_else(|| panic!("no code: {q:?}")).to_string();
    let logs = all(&a, &ws);
    let registered = logs.iter().position(|l| l.contains("client registered")).unwrap();
    let granted = logs.iter().position(|l| l.contains("authorization granted")).unwrap();
    assert_ne!(registered, granted, "registered on one replica, consented on another");

    // The code, on the next replica; the access token works on every replica.
    let code_form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("client_id", client.as_str()),
    ];
    let (status, t) = a.token(&code_form).await;
    assert_eq!(status, 200, "{t}");
    let access = t["access_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&lb.url);
    c.bearer = Some(access);
    c.initialize().await;
    for i in 0..3 {
        let r = c.tool(i, "echo", json!({"text": "logged in"})).await;
        assert_eq!(r["result"]["content"][0]["text"], "logged in", "{r}");
    }

    // Refresh rotation, each refresh on another replica.
    let r0 = t["refresh_token"].as_str().unwrap().to_string();
    let (status, t1) = refresh(&a, &client, &r0).await;
    assert_eq!(status, 200, "{t1}");
    let r1 = t1["refresh_token"].as_str().unwrap().to_string();
    let (status, t2) = refresh(&a, &client, &r1).await;
    assert_eq!(status, 200, "{t2}");
    let mut r2 = t2["refresh_token"].as_str().unwrap().to_string();
    // A chain of refreshes, each on the next replica (printed, not asserted: a figure for
    // docs/deploy.md).
    let mut took = Vec::new();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        let (status, tn) = refresh(&a, &client, &r2).await;
        took.push(t.elapsed());
        assert_eq!(status, 200, "{tn}");
        r2 = tn["refresh_token"].as_str().unwrap().to_string();
    }
    took.sort();
    println!("refresh through HAProxy over 3 replicas on Redis: p50 {:?}, max {:?} (30 in a row)", took[15], took[29]);

    // Reuse of a rotated token, on whichever replica: the whole family is revoked everywhere.
    let (status, e) = refresh(&a, &client, &r0).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    for _ in 0..2 {
        let (status, e) = refresh(&a, &client, &r2).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "the newest token is revoked: {e}");
    }
    // The code is single use on every replica.
    for _ in 0..3 {
        let (status, e) = a.token(&code_form).await;
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    }

    // A second login: three wrong passwords, each posted to whichever replica, lock the name
    // everywhere — the right password then fails too.
    for _ in 0..3 {
        let (p, _) = page(&a, &client).await;
        let (_, q) = a.consent(p, "alice", "wrong password", "approve").await;
        assert_eq!(get(&q, "error"), Some("access_denied"), "{q:?}");
    }
    for _ in 0..3 {
        let (p, _) = page(&a, &client).await;
        let (_, q) = a.consent(p, "alice", PASSWORD, "approve").await;
        assert_eq!((get(&q, "error"), get(&q, "code")), (Some("access_denied"), None), "locked everywhere: {q:?}");
    }
    let locked = all(&a, &ws).iter().filter(|l| l.contains("too many failed logins")).count();
    assert_eq!(locked, 1, "locked once, by the third failure wherever it landed");
    println!("built-in authorization server over 3 replicas: login, 2 refreshes, reuse revoked, lockout shared");
}
