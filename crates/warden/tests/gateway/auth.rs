//! The authentication attack matrix: one case each, expecting the exact status and challenge.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client, Proc};
use warden_testkit::idp::{now, Idp};

fn challenge(r: &reqwest::Response) -> String {
    r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

async fn init_status(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut rb = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": warden_testkit::harness::init_params()}).to_string());
    if let Some(t) = bearer {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), challenge(&r))
}

pub(crate) fn gateway_with(idp: &Idp, extra: &str) -> Proc {
    let auth = format!(
        "[auth]\nrequired_scopes = [\"mcp\"]\n{extra}\n[[auth.jwt]]\nissuer = {:?}\nunknown_kid_refresh_secs = 30\n",
        idp.issuer
    );
    warden("", &format!("{}\n{auth}", fixture_stdio_upstream("fx", Some(""), "")))
}

#[tokio::test]
async fn jwt_attack_matrix() {
    let idp = Idp::start().await;
    let w = gateway_with(&idp, "");
    let url = &w.url;
    let resource = url.clone();
    let meta = format!("{}/.well-known/oauth-protected-resource/mcp", url.trim_end_matches("/mcp"));

    // No token: 401 with the metadata URL and the scope.
    let (s, c) = init_status(url, None).await;
    assert_eq!(s, 401);
    assert_eq!(c, format!("Bearer resource_metadata=\"{meta}\", scope=\"mcp\""));

    // A good token (EdDSA and ES256) works end to end.
    let good = idp.claims(&resource, "mcp");
    for t in [idp.sign_ed(&good, Some("ed1")), idp.sign_ec(&good)] {
        let mut c = Client::new(url);
        c.bearer = Some(t);
        c.initialize().await;
        let a = c.tool(1, "echo", json!({"text": "hi"})).await;
        assert_eq!(a["result"]["content"][0]["text"], "hi", "{a}");
    }

    let mut cases: Vec<(&str, String, &str)> = vec![];
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c.insert(k.into(), v);
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.remove(k);
        c
    };
    cases.push(("malformed", "abc.def".into(), "malformed token"));
    cases.push(("not base64", "a.b.c!".into(), "malformed token"));
    let t = idp.sign_ed(&good, Some("ed1"));
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Value::Object(with("sub", json!("mallory"))).to_string(),
    );
    parts[1] = &forged;
    cases.push(("bad signature", parts.join("."), "bad signature"));
    cases.push(("expired", idp.sign_ed(&with("exp", json!(now() - 120)), Some("ed1")), "token expired"));
    cases.push((
        "nbf in the future",
        idp.sign_ed(&with("nbf", json!(now() + 600)), Some("ed1")),
        "token not yet valid",
    ));
    cases.push((
        "iat in the future",
        idp.sign_ed(&with("iat", json!(now() + 600)), Some("ed1")),
        "token issued in the future",
    ));
    cases.push((
        "too long-lived",
        idp.sign_ed(&with("exp", json!(now() + 86400)), Some("ed1")),
        "token lifetime exceeds the maximum",
    ));
    cases.push((
        "wrong issuer",
        idp.sign_ed(&with("iss", json!("https://evil.example")), Some("ed1")),
        "token from an untrusted issuer",
    ));
    cases.push((
        "wrong audience",
        idp.sign_ed(&with("aud", json!("https://other.example/mcp")), Some("ed1")),
        "token is not for this resource",
    ));
    let other_port = url.replace(&url.split(':').nth(2).unwrap()[..5], "1/mcp");
    cases.push((
        "token for another local resource",
        idp.sign_ed(&with("aud", json!(other_port)), Some("ed1")),
        "token is not for this resource",
    ));
    cases.push(("no audience", idp.sign_ed(&without("aud"), Some("ed1")), "token lacks a required claim"));
    cases.push(("no subject", idp.sign_ed(&without("sub"), Some("ed1")), "token lacks a required claim"));
    cases.push(("alg none", Idp::unsigned(&good), "malformed token"));
    cases.push((
        "HS256 with the public key",
        Idp::sign_hs256_raw(&json!({"alg": "HS256", "kid": "ed1"}), &good, &idp.ed_public),
        "signature algorithm not accepted",
    ));
    cases.push((
        "HS256 with the JWKS's symmetric key",
        Idp::sign_hs256_raw(
            &json!({"alg": "HS256", "kid": "hmac1"}),
            &good,
            b"a shared secret that must never be used",
        ),
        "signature algorithm not accepted",
    ));
    cases.push(("EdDSA header on the EC key", Idp::sign_foreign(&good, "ec1", None), "unknown signing key"));
    cases.push(("unknown kid", Idp::sign_foreign(&good, "nobody", None), "unknown signing key"));
    cases.push((
        "jku pointing elsewhere",
        Idp::sign_foreign(&good, "attacker", Some("http://127.0.0.1:9/evil-jwks")),
        "unknown signing key",
    ));
    cases.push(("oversized token", "a".repeat(9000), "token too large"));
    for (name, token, why) in &cases {
        let (s, c) = init_status(url, Some(token)).await;
        assert_eq!(s, 401, "{name}");
        assert_eq!(
            c,
            format!("Bearer error=\"invalid_token\", error_description=\"{why}\", resource_metadata=\"{meta}\""),
            "{name}"
        );
    }

    // Flood of unknown kids: at most one extra JWKS fetch inside the refresh interval.
    let before = idp.state.jwks_fetches.load(Ordering::SeqCst);
    for i in 0..30 {
        let (s, _) = init_status(url, Some(&Idp::sign_foreign(&good, &format!("random-{i}"), None))).await;
        assert_eq!(s, 401);
    }
    let after = idp.state.jwks_fetches.load(Ordering::SeqCst);
    assert!(after - before <= 1, "30 unknown kids caused {} JWKS fetches", after - before);

    // Token in the query string: refused even alongside a good header.
    let t = idp.sign_ed(&good, Some("ed1"));
    let r = reqwest::Client::new()
        .post(format!("{url}?access_token={t}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(&t)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        challenge(&r),
        "Bearer error=\"invalid_request\", error_description=\"tokens are accepted only in the Authorization header\""
    );

    // Missing scope: 403 with the scope needed (step-up).
    let (s, c) = init_status(url, Some(&idp.sign_ed(&with("scope", json!("other")), Some("ed1")))).await;
    assert_eq!(s, 403);
    assert_eq!(
        c,
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp\", resource_metadata=\"{meta}\", \
             error_description=\"additional scope required\""
        )
    );

    // Protected resource metadata at both well-known paths.
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let m: Value =
            reqwest::get(format!("{}{path}", url.trim_end_matches("/mcp"))).await.unwrap().json().await.unwrap();
        assert_eq!(m["resource"], resource.as_str(), "{m}");
        assert_eq!(m["authorization_servers"], json!([idp.issuer]), "{m}");
        assert_eq!(m["bearer_methods_supported"], json!(["header"]));
    }

    // No token ever reaches the log.
    let log = w.log();
    for (name, token, _) in &cases {
        if token.len() > 20 {
            assert!(!log.contains(token.as_str()), "{name}: token in the log");
        }
    }
    assert!(!log.contains(&t), "token in the log");
}

/// An issuer that starts after Warden (the usual order in compose or Kubernetes): valid tokens
/// wait (503 with `Retry-After`, never 401, which would send OAuth clients into a new login),
/// `/readyz` names the issuer without keys, and the keys are fetched within seconds of the
/// issuer coming up — not after `unknown_kid_refresh_secs` (30 s here).
#[tokio::test]
async fn an_issuer_that_starts_late_makes_tokens_wait_not_fail() {
    let idp = Idp::start().await;
    idp.state.down.store(true, Ordering::SeqCst);
    let w = gateway_with(&idp, "");
    let good = idp.sign_ed(&idp.claims(&w.url, "mcp"), Some("ed1"));
    let attempt = || async {
        let r = reqwest::Client::new()
            .post(&w.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {good}"))
            .body(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": warden_testkit::harness::init_params()}).to_string())
            .send()
            .await
            .unwrap();
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        (r.status().as_u16(), retry)
    };
    let readyz = w.url.replace("/mcp", "/readyz");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (status, retry) = attempt().await;
        assert_eq!(status, 503, "a good token while the issuer is down waits, it does not fail");
        assert!(retry.is_some_and(|s| (1..=30).contains(&s)), "Retry-After: {retry:?}");
    }
    let body: Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
    let state = body["issuers"][&idp.issuer].as_str().unwrap_or_default().to_string();
    assert!(state.starts_with("no keys"), "{body}");

    idp.state.down.store(false, Ordering::SeqCst);
    let up = std::time::Instant::now();
    loop {
        let (status, retry) = attempt().await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "never 401 while the keys are being fetched");
        assert!(up.elapsed() < Duration::from_secs(4), "the keys came too late");
        tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
    }
    assert!(up.elapsed() < Duration::from_secs(4), "took {:?}", up.elapsed());
    let body: Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
    assert_eq!(body["issuers"][&idp.issuer], "2 key(s)", "{body}");
    // The fetches stayed bounded while it was down (backoff, at most one on demand a second).
    assert!(idp.state.jwks_fetches.load(Ordering::SeqCst) <= 12, "{}", idp.state.jwks_fetches.load(Ordering::SeqCst));
}

#[tokio::test]
async fn sessions_are_bound_to_their_principal() {
    let idp = Idp::start().await;
    let (key_a, entry_a) = warden_gateway::auth::apikey::generate("svc-a", &["mcp".into()], Some("tenant-a"), None);
    let (key_b, entry_b) = warden_gateway::auth::apikey::generate("svc-b", &["mcp".into()], Some("tenant-b"), None);
    let (key_old, entry_old) =
        warden_gateway::auth::apikey::generate("svc-old", &["mcp".into()], None, Some("2020-01-01T00:00:00Z"));
    let w = gateway_with(&idp, &format!("{entry_a}\n{entry_b}\n{entry_old}"));
    let meta = format!("{}/.well-known/oauth-protected-resource/mcp", w.url.trim_end_matches("/mcp"));

    let mut a = Client::new(&w.url);
    a.bearer = Some(key_a.clone());
    a.initialize().await;
    assert_eq!(a.tool(1, "echo", json!({"text": "a"})).await["result"]["content"][0]["text"], "a");

    // Another tenant's key presenting A's session id: as if the session did not exist.
    let mut b = Client::new(&w.url);
    b.bearer = Some(key_b);
    b.session = a.session.clone();
    let r = b.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "{}", r.raw);
    // So does a JWT user.
    b.bearer = Some(idp.sign_ed(&idp.claims(&w.url, "mcp"), Some("ed1")));
    assert_eq!(b.post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).await.status, 404);
    // A still works.
    assert_eq!(
        a.call(4, "tools/list", json!({})).await["result"]["tools"].as_array().map(|t| !t.is_empty()),
        Some(true)
    );

    for (name, key, why) in [
        ("wrong key", format!("{}x", &key_a[..key_a.len() - 1]), "unknown API key"),
        ("unknown id", "wdk_000000000000_abcdef".to_string(), "unknown API key"),
        ("expired key", key_old, "API key expired"),
    ] {
        let (s, c) = init_status(&w.url, Some(&key)).await;
        assert_eq!(s, 401, "{name}");
        assert_eq!(
            c,
            format!("Bearer error=\"invalid_token\", error_description=\"{why}\", resource_metadata=\"{meta}\""),
            "{name}"
        );
    }
    let log = w.log();
    assert!(!log.contains(&key_a), "API key in the log");
}

/// Each request is authorized as the token that sent it, not as the one that opened the
/// session: a later token of the same subject with fewer scopes cannot use what the first one
/// could; and the same `sub` from another trusted issuer is another caller (404 on the session).
#[tokio::test]
async fn each_request_is_authorized_as_its_own_token() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let rules = "[[rule]]\nid = \"writers\"\ntools = [\"echo\"]\nscopes = [\"write\"]\n\
                 [[rule]]\nid = \"readers\"\ntools = [\"test_simple_text\"]\n";
    let auth = format!(
        "[auth]\nrequired_scopes = [\"mcp\"]\n[[auth.jwt]]\nissuer = {:?}\n[[auth.jwt]]\nissuer = {:?}\n",
        idp.issuer, other.issuer
    );
    let w = warden("", &format!("{}\n{auth}\n{rules}", fixture_stdio_upstream("fx", Some(""), "")));
    let mut c = Client::new(&w.url);
    c.bearer = Some(idp.sign_ed(&idp.claims(&w.url, "mcp write"), Some("ed1")));
    c.initialize().await;
    assert_eq!(c.tool(1, "echo", json!({"text": "w"})).await["result"]["content"][0]["text"], "w");
    // The same person, a narrower token: no longer allowed to write, still allowed to read.
    c.bearer = Some(idp.sign_ed(&idp.claims(&w.url, "mcp"), Some("ed1")));
    let r = c.tool(2, "echo", json!({"text": "w"})).await;
    assert_eq!(r["error"]["code"], -32602, "authorized as the narrower token: {r}");
    assert!(c.tool(3, "test_simple_text", json!({})).await.get("result").is_some());
    let listed = c.call(4, "tools/list", json!({})).await;
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.contains(&"echo"), "listed as the narrower token: {names:?}");
    // `alice` of another issuer is someone else.
    c.bearer = Some(other.sign_ed(&other.claims(&w.url, "mcp write"), Some("ed1")));
    let r = c.post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "{}", r.raw);
}

/// One caller cannot take every session: past `max_sessions_per_principal` its `initialize`
/// gets 429 (another caller is unaffected), and closing one makes room again.
#[tokio::test]
async fn sessions_are_capped_per_caller() {
    let idp = Idp::start().await;
    let (k1, e1) = warden_gateway::auth::apikey::generate("one", &["mcp".into()], None, None);
    let (k2, e2) = warden_gateway::auth::apikey::generate("two", &["mcp".into()], None, None);
    let auth = format!("[auth]\nrequired_scopes = [\"mcp\"]\n{e1}\n{e2}\n[[auth.jwt]]\nissuer = {:?}\n", idp.issuer);
    let w =
        warden("max_sessions_per_principal = 2", &format!("{}\n{auth}", fixture_stdio_upstream("fx", Some(""), "")));
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = Client::new(&w.url);
        c.bearer = Some(k1.clone());
        c.initialize().await;
        open.push(c);
    }
    assert_eq!(init_status(&w.url, Some(&k1)).await.0, 429, "a third session of the same caller");
    assert_eq!(init_status(&w.url, Some(&k2)).await.0, 200, "another caller is not affected");
    let r = open[0].request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(init_status(&w.url, Some(&k1)).await.0, 200, "room again after a DELETE");
}

#[tokio::test]
async fn opaque_tokens_via_introspection_and_revocation() {
    let idp = Idp::start().await;
    std::env::set_var("WARDEN_TEST_INTROSPECT_SECRET", "s3cret");
    let extra = format!(
        "[auth.introspection]\nendpoint = \"{}/introspect\"\nclient_id = \"warden\"\n\
         client_secret = {{ file = {:?} }}\ncache_secs = 1\n",
        idp.issuer,
        {
            let p = std::env::temp_dir().join(format!("warden-introspect-secret-{}", std::process::id()));
            std::fs::write(&p, "s3cret\n").unwrap();
            p.display().to_string()
        }
    );
    let w = gateway_with(&idp, &extra);
    let n = now();
    idp.state.opaque.lock().insert(
        "opaque-token-1".into(),
        json!({"active": true, "sub": "bob", "aud": w.url, "scope": "mcp", "exp": n + 600, "iat": n}),
    );
    idp.state.opaque.lock().insert(
        "opaque-other-aud".into(),
        json!({"active": true, "sub": "bob", "aud": "https://elsewhere/mcp", "scope": "mcp", "exp": n + 600}),
    );
    assert_eq!(init_status(&w.url, Some("opaque-token-1")).await.0, 200);
    assert_eq!(init_status(&w.url, Some("opaque-other-aud")).await.0, 401);
    assert_eq!(init_status(&w.url, Some("never-issued")).await.0, 401);
    // Revoked at the IdP: refused once the (1 s) cache entry expires.
    idp.state.opaque.lock().remove("opaque-token-1");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, c) = init_status(&w.url, Some("opaque-token-1")).await;
    assert_eq!(s, 401);
    assert!(c.contains("token is not active"), "{c}");

    // A flood of made-up tokens (issue 19, finding 13): each uncached one would cost the IdP a
    // request. Past 20 at once from one address, Warden answers 503 and asks the IdP nothing.
    let before = idp.state.introspections.load(std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(init_status(&w.url, Some(&format!("made-up-token-{i}"))).await.0);
    }
    let asked = idp.state.introspections.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(statuses.iter().filter(|s| **s == 503).count() >= 8, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    assert!(asked <= 22, "the IdP was asked {asked} times");
}

#[tokio::test]
async fn network_bind_requires_auth_and_tls_or_proxy() {
    let dir = std::env::temp_dir().join(format!("warden-bind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let up = fixture_stdio_upstream("fx", None, "");
    for (cfg, want) in [
        (format!("[listen]\naddr = \"0.0.0.0:0\"\n{up}"), "no authentication is configured"),
        (
            format!("[listen]\naddr = \"0.0.0.0:0\"\n{up}\n[auth]\nresource = \"https://mcp.example/mcp\"\nmtls_scopes = [\"mcp\"]\n"),
            "refusing plain HTTP",
        ),
        (
            format!("[listen]\naddr = \"0.0.0.0:0\"\n{up}\n[auth]\nmtls_scopes = [\"mcp\"]\n"),
            "auth.resource: required on a non-loopback bind",
        ),
        (
            format!("[listen]\naddr = \"127.0.0.1:0\"\n{up}\n[auth]\n[[auth.jwt]]\nissuer = \"https://idp\"\nalgorithms = [\"HS256\"]\n"),
            "\"HS256\" is not accepted",
        ),
    ] {
        let p = dir.join("w.toml");
        std::fs::write(&p, cfg).unwrap();
        let out = std::process::Command::new(warden_testkit::harness::bin("warden"))
            .args(["check", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{want}: {err}");
    }
    let ok = format!(
        "[listen]\naddr = \"0.0.0.0:0\"\ntrusted_proxies = [\"10.0.0.1\"]\n{up}\n[auth]\nresource = \"https://mcp.example/mcp\"\nmtls_scopes = [\"mcp\"]\n"
    );
    std::fs::write(dir.join("w.toml"), ok).unwrap();
    let out = std::process::Command::new(warden_testkit::harness::bin("warden"))
        .args(["check", "--config"])
        .arg(dir.join("w.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The built-in authorization server, driven like a browser and a client would.
pub(crate) mod builtin {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    pub struct As {
        pub w: Proc,
        pub base: String,
        pub http: reqwest::Client,
    }

    /// Warden with `[auth.builtin]` and a user alice / "correct horse battery".
    pub fn start() -> As {
        start_with("")
    }

    /// The same, with more `[auth.builtin]` settings.
    pub fn start_with(builtin: &str) -> As {
        let up = fixture_stdio_upstream("fx", Some(""), "");
        let w = warden(
            "",
            &format!(
                "{up}\n[auth]\nrequired_scopes = [\"mcp\"]\n[auth.builtin]\nscopes = [\"mcp\", \"admin\"]\n{builtin}\n"
            ),
        );
        let cfg = w.dir.join("warden.toml");
        let mut child = std::process::Command::new(warden_testkit::harness::bin("warden"))
            .args(["user", "add", "--config"])
            .arg(&cfg)
            .args(["alice", "--scopes", "mcp"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
        assert!(child.wait().unwrap().success());
        // Users are read at start: restart with the user in place.
        drop(w);
        let text = std::fs::read_to_string(&cfg).unwrap();
        let port = warden_testkit::harness::free_port();
        let text = text.replacen(text.split('"').nth(1).unwrap(), &format!("127.0.0.1:{port}"), 1);
        std::fs::write(&cfg, text).unwrap();
        let w = warden_testkit::harness::warden_config(&cfg, port);
        let base = w.url.trim_end_matches("/mcp").to_string();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        As { w, base, http }
    }

    pub fn pkce() -> (String, String) {
        let verifier = B64.encode(rand_bytes());
        let challenge = B64.encode(warden_gateway::auth::sha256(verifier.as_bytes()));
        (verifier, challenge)
    }

    fn rand_bytes() -> [u8; 32] {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
        b
    }

    impl As {
        /// Stop and start Warden again on the same port and files.
        pub fn restart(&mut self) {
            let cfg = self.w.dir.join("warden.toml");
            let port: u16 = self.base.rsplit(':').next().unwrap().parse().unwrap();
            self.w.child.kill().unwrap();
            self.w.child.wait().unwrap();
            self.w = warden_testkit::harness::warden_config(&cfg, port);
            // Pooled connections went with the old process.
            self.http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        }

        pub async fn register(&self, redirect: &str) -> String {
            let r = self
                .http
                .post(format!("{}/register", self.base))
                .json(&json!({"redirect_uris": [redirect], "client_name": "Test <b>Client</b>", "token_endpoint_auth_method": "none"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_string()
        }

        /// GET /authorize; the page, its hidden fields and the CSRF cookie — or the redirect.
        pub async fn authorize(&self, query: &[(&str, String)]) -> reqwest::Response {
            self.http.get(format!("{}/authorize", self.base)).query(query).send().await.unwrap()
        }

        /// Submit the consent form as the browser would; the redirect's query.
        pub async fn consent(
            &self,
            page: reqwest::Response,
            user: &str,
            pass: &str,
            decision: &str,
        ) -> (u16, Vec<(String, String)>) {
            let cookie =
                page.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
            let html = page.text().await.unwrap();
            let field = |name: &str| {
                let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
                html[at..].split('"').next().unwrap().to_string()
            };
            let r = self
                .http
                .post(format!("{}/authorize", self.base))
                .header("cookie", cookie)
                .form(&[
                    ("request_id", field("request_id")),
                    ("csrf", field("csrf")),
                    ("username", user.into()),
                    ("password", pass.into()),
                    ("decision", decision.into()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), location_query(&r))
        }

        pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
            let r = self.http.post(format!("{}/token", self.base)).form(form).send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
        }
    }

    pub fn location_query(r: &reqwest::Response) -> Vec<(String, String)> {
        r.headers()
            .get("location")
            .and_then(|l| reqwest::Url::parse(l.to_str().ok()?).ok())
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }

    pub fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
        q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
}

#[tokio::test]
async fn builtin_authorization_server_flow_and_attacks() {
    use builtin::{get, location_query};
    let a = builtin::start();
    let resource = a.w.url.clone();
    let redirect = "http://127.0.0.1:9/callback";

    // Metadata: PRM names the built-in server; RFC 8414 document is complete.
    let prm: Value = reqwest::get(format!("{}/.well-known/oauth-protected-resource/mcp", a.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([a.base]));
    let m: Value =
        reqwest::get(format!("{}/.well-known/oauth-authorization-server", a.base)).await.unwrap().json().await.unwrap();
    assert_eq!(m["issuer"], a.base.as_str());
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert!(m["registration_endpoint"].is_string());

    let client = a.register(redirect).await;
    let (verifier, challenge) = builtin::pkce();
    let q = |extra: &[(&'static str, String)]| {
        let mut v: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", client.clone()),
            ("redirect_uri", redirect.into()),
            ("scope", "mcp".into()),
            ("state", "xyz".into()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".into()),
            ("resource", resource.clone()),
        ];
        for (k, val) in extra {
            v.retain(|(a, _)| a != k);
            v.push((k, val.clone()));
        }
        v
    };

    // The consent page: names client (escaped), scopes, redirect URI; framing forbidden.
    let page = a.authorize(&q(&[])).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let (status, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    assert_eq!(status, 303);
    assert_eq!((get(&redir, "state"), get(&redir, "iss")), (Some("xyz"), Some(a.base.as_str())));
    let code = get(&redir, "code").unwrap().to_string();

    // PKCE verifier mismatch fails (and burns the code).
    let (s, v) = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &client),
            ("code_verifier", &"x".repeat(43)),
        ])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    // A fresh code, exchanged properly.
    let page = a.authorize(&q(&[])).await;
    let (_, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    let code = get(&redir, "code").unwrap().to_string();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", client.as_str()),
        ("code_verifier", verifier.as_str()),
        ("resource", resource.as_str()),
    ];
    let (s, tok) = a.token(&exchange).await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["expires_in"].as_u64().unwrap() <= 3600);
    // The access token works at /mcp.
    let mut c = Client::new(&a.w.url);
    c.bearer = Some(tok["access_token"].as_str().unwrap().to_string());
    c.initialize().await;
    assert_eq!(
        c.tool(1, "echo", json!({"text": "via built-in AS"})).await["result"]["content"][0]["text"],
        "via built-in AS"
    );
    // Replayed code: refused, and the tokens issued from it are revoked.
    let (s, v) = a.token(&exchange).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let r1 = tok["refresh_token"].as_str().unwrap();
    let (s, _) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", &client)]).await;
    assert_eq!(s, 400, "refresh token of a replayed code must be revoked");

    // Refresh rotation and reuse detection on a clean grant.
    let page = a.authorize(&q(&[])).await;
    let (_, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    let code = get(&redir, "code").unwrap().to_string();
    let (_, tok) = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &client),
            ("code_verifier", &verifier),
        ])
        .await;
    let r1 = tok["refresh_token"].as_str().unwrap().to_string();
    let (s, t2) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("client_id", &client)]).await;
    assert_eq!(s, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "refresh tokens rotate");
    let (s, v) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", &r1), ("client_id", &client)]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "reused refresh token");
    let (s, _) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", &r2), ("client_id", &client)]).await;
    assert_eq!(s, 400, "reuse revokes the whole family");

    // `plain` PKCE and missing PKCE: sent back to the client with invalid_request.
    for extra in [vec![("code_challenge_method", "plain".to_string())]] {
        let r = a.authorize(&q(&extra)).await;
        assert_eq!(r.status(), 303);
        assert_eq!(get(&location_query(&r), "error"), Some("invalid_request"));
    }
    let no_pkce: Vec<(&str, String)> = q(&[]).into_iter().filter(|(k, _)| !k.starts_with("code_challenge")).collect();
    let r = a.authorize(&no_pkce).await;
    assert_eq!(get(&location_query(&r), "error"), Some("invalid_request"));
    // Redirect URI not matching exactly: an error page, never a redirect.
    for bad in ["http://127.0.0.1:9/callback/", "http://127.0.0.1:9/callback?x=1", "http://evil.example/callback"] {
        let r = a.authorize(&q(&[("redirect_uri", bad.to_string())])).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none());
    }
    // A token for another resource is not issued.
    let r = a.authorize(&q(&[("resource", "https://other.example/mcp".to_string())])).await;
    assert_eq!(get(&location_query(&r), "error"), Some("invalid_target"));
    // Anyone may register a client: one that points at another site does not turn Warden into a
    // redirector. Its errors are shown here, and its self-chosen name is marked unverified.
    let evil_cb = "https://evil.example/cb";
    let evil = a.register(evil_cb).await;
    let with = |client: &str, extra: &[(&'static str, &str)]| {
        let mut v: Vec<(&str, String)> =
            q(&[]).into_iter().filter(|(k, _)| *k != "client_id" && *k != "redirect_uri").collect();
        v.push(("client_id", client.to_string()));
        v.push(("redirect_uri", evil_cb.to_string()));
        for &(k, val) in extra {
            v.retain(|(x, _)| *x != k);
            v.push((k, val.to_string()));
        }
        v
    };
    for extra in
        [&[("response_type", "token")][..], &[("code_challenge_method", "plain")], &[("scope", "no-such-scope")]]
    {
        let r = a.authorize(&with(&evil, extra)).await;
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(r.headers().get("location").is_none(), "no redirect to {evil_cb}: {extra:?}");
    }
    let consent = a.authorize(&with(&evil, &[])).await.text().await.unwrap();
    assert!(consent.contains("unverified"), "{consent}");
    // Consent without the CSRF cookie is refused.
    let page = a.authorize(&q(&[])).await;
    let html = page.text().await.unwrap();
    let rid = html.split("name=\"request_id\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let r = a
        .http
        .post(format!("{}/authorize", a.base))
        .form(&[
            ("request_id", rid),
            ("csrf", csrf),
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wrong password and denial come back as access_denied.
    let page = a.authorize(&q(&[])).await;
    let (_, redir) = a.consent(page, "alice", "wrong", "approve").await;
    assert_eq!(get(&redir, "error"), Some("access_denied"));
    // A scope the user may not grant.
    let page = a.authorize(&q(&[("scope", "mcp admin".to_string())])).await;
    let (_, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    assert_eq!(get(&redir, "error"), Some("invalid_scope"));

    // `warden token mint` makes tokens the gateway accepts.
    let out = std::process::Command::new(warden_testkit::harness::bin("warden"))
        .args(["token", "mint", "--config"])
        .arg(a.w.dir.join("warden.toml"))
        .args(["--sub", "svc", "--scopes", "mcp", "--ttl", "5m", "--resource", &resource])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(init_status(&a.w.url, Some(&minted)).await.0, 200);
    let out = std::process::Command::new(warden_testkit::harness::bin("warden"))
        .args(["token", "mint", "--config"])
        .arg(a.w.dir.join("warden.toml"))
        .args(["--sub", "svc", "--ttl", "2h"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 2 h token must be refused");
}

/// Client ID Metadata Documents, state that survives a restart, and the login lockout.
#[tokio::test]
async fn client_metadata_documents_persistent_state_and_lockout() {
    use builtin::get;
    let redirect = "http://127.0.0.1:9/cb";
    let (site, hits) = warden_testkit::idp::static_site(|base| {
        let doc = |id: String| {
            json!({"client_id": id, "client_name": "Doc <i>Client</i>", "redirect_uris": [redirect],
                   "token_endpoint_auth_method": "none"})
            .to_string()
        };
        let json_type = || vec![("content-type", "application/json".to_string())];
        vec![
            ("/good.json", 200, json_type(), doc(format!("{base}/good.json"))),
            ("/other.json", 200, json_type(), doc(format!("{base}/good.json"))),
            ("/big.json", 200, json_type(), format!("{{\"pad\": \"{}\"}}", "x".repeat(6000))),
            ("/moved.json", 302, vec![("location", format!("{base}/good.json"))], String::new()),
            ("/secret.json", 200, json_type(), {
                let mut d: Value = serde_json::from_str(&doc(format!("{base}/secret.json"))).unwrap();
                d["client_secret"] = "s".into();
                d.to_string()
            }),
        ]
    })
    .await;
    let mut a = builtin::start_with("client_metadata_allow_loopback = true\nmax_failed_logins = 3");
    let m: Value =
        reqwest::get(format!("{}/.well-known/oauth-authorization-server", a.base)).await.unwrap().json().await.unwrap();
    assert_eq!(m["client_id_metadata_document_supported"], true);
    let resource = a.w.url.clone();
    let (verifier, challenge) = builtin::pkce();
    let q = |client: &str| -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", client.into()),
            ("redirect_uri", redirect.into()),
            ("scope", "mcp".into()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".into()),
            ("resource", resource.clone()),
        ]
    };

    // A URL client: the page names it (escaped) and the host its document came from.
    let good = format!("{site}/good.json");
    let page = a.authorize(&q(&good)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Doc &lt;i&gt;Client&lt;/i&gt; (from 127.0.0.1)"), "{html}");
    let page = a.authorize(&q(&good)).await;
    let (_, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    let code = get(&redir, "code").unwrap().to_string();
    let (s, tok) = a
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", &good),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the document is fetched once and cached");
    let mut c = Client::new(&a.w.url);
    c.bearer = Some(tok["access_token"].as_str().unwrap().to_string());
    c.initialize().await;
    // A URL client presenting a secret is not a client of this server.
    let (s, _) = a
        .token(&[("grant_type", "refresh_token"), ("refresh_token", "x"), ("client_id", &good), ("client_secret", "s")])
        .await;
    assert_eq!(s, 401);

    // Hostile documents: an error page, never a redirect to the (unverified) redirect URI.
    for bad in ["other.json", "big.json", "moved.json", "secret.json", "missing.json"] {
        let r = a.authorize(&q(&format!("{site}/{bad}"))).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad}");
    }
    // A non-normal URL (dot segment) is refused before any fetch.
    let before = hits.load(Ordering::SeqCst);
    let r = a.authorize(&q(&format!("{site}/x/../good.json"))).await;
    assert_eq!(r.status(), 400);
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // State survives a restart: the registered client and the refresh token.
    let registered = a.register(redirect).await;
    a.restart();
    let r1 = tok["refresh_token"].as_str().unwrap();
    let (s, t2) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", &good)]).await;
    assert_eq!(s, 200, "refresh token after restart: {t2}");
    a.restart();
    let (s, v) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", &good)]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "reuse is still detected after restart");
    let r2 = t2["refresh_token"].as_str().unwrap();
    let (s, _) = a.token(&[("grant_type", "refresh_token"), ("refresh_token", r2), ("client_id", &good)]).await;
    assert_eq!(s, 400, "and the revocation of the family persisted");
    assert_eq!(a.authorize(&q(&registered)).await.status(), 200, "registered client known after restart");
    let mode = std::fs::metadata(a.w.dir.join("warden-data/as-state.json")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077, 0);
    let state = std::fs::read_to_string(a.w.dir.join("warden-data/as-state.json")).unwrap();
    assert!(!state.contains(r2), "refresh tokens are stored only as hashes");

    // Lockout: after 3 failures even the right password is refused, with the same answer.
    for _ in 0..3 {
        let page = a.authorize(&q(&registered)).await;
        let (_, redir) = a.consent(page, "alice", "wrong password", "approve").await;
        assert_eq!(get(&redir, "error_description"), Some("login failed"));
    }
    let page = a.authorize(&q(&registered)).await;
    let (_, redir) = a.consent(page, "alice", "correct horse battery", "approve").await;
    assert_eq!(get(&redir, "error_description"), Some("login failed"));
    assert!(get(&redir, "code").is_none());
}

mod tls {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use warden_testkit::pki::Ca;

    /// A client trusting `ca_pem`, speaking only `versions`, with an optional client certificate.
    fn client_config(
        ca_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
        identity: Option<(&str, &str)>,
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        match identity {
            None => b.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).map(|c| c.unwrap()).collect();
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                b.with_client_auth_cert(chain, key).unwrap()
            }
        }
    }

    async fn handshake(
        port: u16,
        cfg: rustls::ClientConfig,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        // TLS 1.3 client-certificate failures surface on first use.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        Ok(s)
    }

    fn https(w: &Proc) -> String {
        w.url.replace("http://127.0.0.1", "https://localhost")
    }

    #[tokio::test]
    async fn tls13_only_with_mtls_principal_and_reload() {
        let ca = Ca::new("Warden Test CA");
        let dir = std::env::temp_dir().join(format!("warden-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_file, cert, key) = ca.write_server(&dir);
        let up = fixture_stdio_upstream("fx", Some(""), "");
        let w = warden(
            &format!(
                "[listen.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nreload_secs = 1\n",
                cert.display().to_string(),
                key.display().to_string(),
                ca_file.display().to_string()
            ),
            &format!("{up}\n[auth]\nmtls_scopes = [\"mcp\"]\nrequired_scopes = [\"mcp\"]\n"),
        );
        let port: u16 = w.url.split(':').nth(2).unwrap().trim_end_matches("/mcp").parse().unwrap();

        // TLS 1.2 only: refused.
        assert!(handshake(port, client_config(&ca.pem, &[&rustls::version::TLS12], None)).await.is_err());
        // TLS 1.3 without a client certificate: refused.
        assert!(handshake(port, client_config(&ca.pem, &[&rustls::version::TLS13], None)).await.is_err());

        let (c_pem, c_key, _) = ca.issue("svc-a", &["svc-a.example"], true);
        let ca_cert = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
        let http = |identity: Option<reqwest::Identity>| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .add_root_certificate(ca_cert.clone())
                .tls_built_in_root_certs(false);
            if let Some(i) = identity {
                b = b.identity(i);
            }
            b.build().unwrap()
        };
        // A certificate from another CA: refused.
        let other = Ca::new("Another CA");
        let (o_pem, o_key, _) = other.issue("svc-x", &["svc-x.example"], true);
        let bad = http(Some(reqwest::Identity::from_pem(format!("{o_pem}{o_key}").as_bytes()).unwrap()));
        assert!(bad.get(format!("{}/../healthz", https(&w))).send().await.is_err());

        // A good certificate authenticates on its own; its SAN is the principal.
        let mut c = Client::new(&https(&w));
        c.http = http(Some(reqwest::Identity::from_pem(format!("{c_pem}{c_key}").as_bytes()).unwrap()));
        c.initialize().await;
        assert_eq!(c.tool(1, "echo", json!({"text": "mtls"})).await["result"]["content"][0]["text"], "mtls");
        assert!(w.log().contains("subject=svc-a.example"), "{}", w.log());

        // Certificate reload: an open connection survives, new ones get the new certificate.
        let cc = client_config(&ca.pem, &[&rustls::version::TLS13], Some((&c_pem, &c_key)));
        let mut open = handshake(port, cc.clone()).await.unwrap();
        let (new_cert, new_key, new_der) = ca.issue("localhost", &["localhost", "127.0.0.1"], false);
        std::fs::write(&key, new_key).unwrap();
        std::fs::write(&cert, new_cert).unwrap();
        let mut seen_new = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = handshake(port, cc.clone()).await.unwrap();
            if s.get_ref().1.peer_certificates().unwrap()[0].as_ref() == new_der.as_slice() {
                seen_new = true;
                break;
            }
        }
        assert!(seen_new, "the new certificate was not served");
        open.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = open.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"), "open connection dropped");
    }
}

/// Issue 20, finding 6: an issuer asserts only the tenants it is allowed, and grants Warden's own
/// scopes (`warden:admin`, `warden:approve`) only when trusted with them.
#[tokio::test]
async fn issuers_assert_only_their_tenants_and_no_operator_scopes_by_default() {
    let idp = Idp::start().await;
    // A tenant this issuer may not assert: refused.
    let w = gateway_with(&idp, "");
    let text = std::fs::read_to_string(w.dir.join("warden.toml")).unwrap();
    drop(w);
    let fenced =
        text.replace("unknown_kid_refresh_secs = 30\n", "unknown_kid_refresh_secs = 30\ntenants = [\"globex\"]\n");
    let port = warden_testkit::harness::free_port();
    let fenced = fenced.replacen(fenced.split('"').nth(1).unwrap(), &format!("127.0.0.1:{port}"), 1);
    let dir = warden_testkit::harness::tempdir("fenced");
    std::fs::write(dir.join("warden.toml"), &fenced).unwrap();
    let w = warden_testkit::harness::warden_config(&dir.join("warden.toml"), port);
    let acme = idp.sign_ed(&idp.claims(&w.url, "mcp"), Some("ed1"));
    let (s, body) = init_status(&w.url, Some(&acme)).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("tenant its issuer may not assert"), "{body}");
    drop(w);

    // Operator scopes from an issuer not trusted with them are ignored.
    for (trusted, want) in [(false, 403), (true, 200)] {
        let (admin_cfg, admin) = crate::approval::admin_section();
        let extra = if trusted { "admin_scopes = true\n" } else { "" };
        let auth =
            format!("[auth]\nrequired_scopes = [\"mcp\"]\n[[auth.jwt]]\nissuer = {:?}\n{extra}{admin_cfg}", idp.issuer);
        let w = warden("", &format!("{}\n{auth}", fixture_stdio_upstream("fx", Some(""), "")));
        let mut claims = idp.claims(&w.url, "mcp warden:admin");
        claims.remove("tenant");
        let token = idp.sign_ed(&claims, Some("ed1"));
        warden_testkit::harness::wait_http(&admin);
        let r = reqwest::Client::new().get(format!("{admin}/kill-switches")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "admin_scopes = {trusted}");
    }
}
