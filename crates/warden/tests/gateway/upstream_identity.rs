//! Whose identity reaches an upstream: Warden's own (client credentials) by default, never the
//! client's token. Issue 27: an upstream that acts on each user's own account gets each
//! caller's identity, not Warden's: `[upstream.oauth] mode = "exchange"` exchanges the caller's
//! validated token (RFC 8693) at the upstream's authorization server for a token for that
//! upstream, cached per caller. Here the upstream is a second Warden (B) that trusts the IdP's
//! tokens and logs who called; the IdP implements the exchange (`warden-testkit`'s `idp.rs`).

use serde_json::json;
use std::sync::atomic::Ordering;
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client, Proc};
use warden_testkit::idp::Idp;

/// Upstream `b` (over HTTP, at `b.url`) with `[upstream.oauth]` of `mode` against the IdP's
/// token endpoint, as client `warden` (its secret in a file).
pub(crate) fn upstream_b(idp: &Idp, b: &Proc, mode: &str) -> String {
    let secret = warden_testkit::harness::tempdir("upstream-secret").join("client-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    format!(
        "[[upstream]]\nname = \"b\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {:?}\n\
         [upstream.oauth]\nmode = {mode:?}\ntoken_url = \"{}/token\"\nclient_id = \"warden\"\n\
         client_secret = {{ file = {:?} }}\nscope = \"mcp\"\nresource = {:?}\nsubject_issuers = [{:?}]\n",
        b.url,
        idp.issuer,
        secret.display().to_string(),
        b.url,
        idp.issuer
    )
}

#[tokio::test]
async fn upstream_credentials_are_wardens_own_never_the_clients() {
    let idp = Idp::start().await;
    // B: a protected Warden in front of the fixture, accepting only the IdP's JWTs.
    let b = crate::auth::gateway_with(&idp, "");
    // A: in front of B, authenticating its own clients with API keys and B with client credentials.
    let (key, entry) = warden_gateway::auth::apikey::generate("svc", &["mcp".into()], None, None);
    let a = warden("", &format!("{}\n[auth]\n{entry}", upstream_b(&idp, &b, "service")));
    let mut c = Client::new(&a.url);
    c.bearer = Some(key.clone());
    c.initialize().await;
    assert_eq!(c.tool(1, "echo", json!({"text": "two hops"})).await["result"]["content"][0]["text"], "two hops");
    assert_eq!(c.tool(2, "echo", json!({"text": "again"})).await["result"]["content"][0]["text"], "again");
    // One token served every connection (control + session), and the client's key never reached B.
    assert_eq!(idp.state.token_requests.load(Ordering::SeqCst), 1);
    assert!(!b.log().contains(&key));
    assert!(b.log().contains("subject=warden"), "{}", b.log());
}

/// B: the upstream, a Warden accepting only the IdP's tokens issued for it (and logging who
/// called); A: in front of B exchanging each caller's token, its callers the IdP's (and those of
/// `more_auth`), with an audit trail.
fn a_in_front_of_b(idp: &Idp, more_auth: &str) -> (warden_testkit::harness::Proc, warden_testkit::harness::Proc) {
    let trust = format!("[auth]\nrequired_scopes = [\"mcp\"]\n{more_auth}\n[[auth.jwt]]\nissuer = {:?}\n", idp.issuer);
    let b = warden("", &format!("{}\n{}", fixture_stdio_upstream("fx", Some(""), ""), trust.replace(more_auth, "")));
    let a = warden("", &format!("{}\n{trust}[audit]\npath = \"audit.jsonl\"\n", upstream_b(idp, &b, "exchange")));
    (a, b)
}

#[tokio::test]
async fn each_caller_reaches_the_upstream_as_itself_through_token_exchange() {
    let idp = Idp::start().await;
    // A's callers: the IdP's, and an API key, which has no token to exchange.
    let (key, entry) = warden_gateway::auth::apikey::generate("svc", &["mcp".into()], None, None);
    let (a, b) = a_in_front_of_b(&idp, &entry);
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
    // (The callers' own tokens, issued for A, would not have been accepted by B: every call
    // above went through with a token issued for B, naming the caller.)
    // A caller without a token to exchange (an API key) is not let through as Warden.
    let mut c = Client::new(&a.url);
    c.bearer = Some(key);
    c.initialize().await;
    let r = c.tool(1, "echo", json!({"text": "as whom?"})).await;
    assert!(r.get("error").is_some() || r["result"]["isError"] == true, "{r}");
    assert_eq!(idp.state.exchanges.load(Ordering::SeqCst), 2);
    // Each call's record names the credential that reached B (a digest, never the token). The
    // trail is written behind the answers: read it until it holds them, for a while.
    let read = || {
        let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
        let calls: Vec<serde_json::Value> = trail
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "call" && e["name"] == "echo" && e["status"] == "success")
            .collect();
        (trail, calls)
    };
    let (mut trail, mut calls) = read();
    for _ in 0..50 {
        if calls.len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        (trail, calls) = read();
    }
    assert_eq!(calls.len(), 6, "{trail}");
    for e in &calls {
        let cred = e["credential"].as_str().unwrap_or_default();
        assert!(cred.starts_with("exchange:") && cred.len() == "exchange:".len() + 12, "{e}");
    }
    let of = |who: &str| calls.iter().find(|e| e["subject"] == who).map(|e| e["credential"].clone());
    assert_ne!(of("alice"), of("bob"), "each caller its own credential");
    assert!(!trail.contains(&token_for("bob")[..40]));
}

/// Review finding: two clients of one user (different tokens, so different rights) share the
/// upstream connection (B speaks 2026-07-28; its connections are shared per caller). Each call
/// must go up with its own client's token, whatever the other did meanwhile: each call's record
/// names the credential exchanged for its own token.
#[tokio::test]
async fn two_clients_of_one_user_each_go_upstream_with_their_own_token() {
    let idp = Idp::start().await;
    let (a, _b) = a_in_front_of_b(&idp, "");
    let token = |client: &str| {
        let mut c = idp.claims(&a.url, "mcp");
        c.insert("client_id".into(), client.into());
        idp.sign_ed(&c, Some("ed1"))
    };
    let mut clients = Vec::new();
    for who in ["agent", "ide"] {
        let mut c = Client::new(&a.url);
        c.bearer = Some(token(who));
        c.initialize().await;
        clients.push(std::sync::Arc::new(c));
    }
    let calls = (0..20).map(|i| {
        let c = clients[i % 2].clone();
        tokio::spawn(async move { c.tool(i as i64, "echo", json!({"text": format!("call {i}")})).await })
    });
    for r in futures::future::join_all(calls).await {
        let r = r.unwrap();
        assert!(r["result"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("call ")), "{r}");
    }
    assert_eq!(idp.state.exchanges.load(Ordering::SeqCst), 2, "one exchange per token");
    let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
    let mut by_client: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for e in trail.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if e["kind"] == "call" && e["name"] == "echo" {
            let client = e["client_id"].as_str().unwrap_or_default().to_string();
            by_client.entry(client).or_default().insert(e["credential"].as_str().unwrap_or_default().to_string());
        }
    }
    let (agent, ide) = (&by_client["agent"], &by_client["ide"]);
    assert_eq!((agent.len(), ide.len()), (1, 1), "each client one credential: {by_client:?}");
    assert!(agent.is_disjoint(ide), "never the other client's: {by_client:?}");
}

/// Issue 27: the credential vault, from the outside: entries put for two users are listed by
/// the admin API and `warden credentials list` (owners and times, never tokens), revoking one
/// leaves the other, the key rotates, and the file holds no token in the clear.
#[tokio::test]
async fn the_vault_lists_revokes_and_rotates_without_showing_a_token() {
    use warden_gateway::vault::{Secret, Vault};
    use warden_policy::{AuthMethod, Principal};
    let (admin_cfg, admin) = crate::approval::admin_section();
    let dir = warden_testkit::harness::tempdir("vault");
    std::fs::write(dir.join("vault.key"), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    let port = warden_testkit::harness::free_port();
    let cfg = dir.join("warden.toml");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:{port}\"\n{}\n{admin_cfg}\n[vault]\nkey = {{ file = \"vault.key\" }}\n\
         [audit]\npath = \"audit.jsonl\"\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n",
        fixture_stdio_upstream("fx", Some(""), "")
    );
    std::fs::write(&cfg, &text).unwrap();
    let loaded = warden_gateway::config::Config::load(&cfg).unwrap();
    let vault = Vault::open(loaded.vault.as_ref().unwrap(), &loaded.base_dir).unwrap();
    let user = |sub: &str| Principal {
        subject: sub.into(),
        tenant: Some("acme".into()),
        method: AuthMethod::Jwt,
        ..Principal::local()
    };
    let secret = |t: &str| Secret {
        access_token: t.into(),
        refresh_token: None,
        expires_at: Some(4_102_444_800),
        scope: None,
        client: None,
    };
    let alice = vault.put("github", &user("alice"), &secret("gho_ALICE_TOKEN_VALUE")).unwrap();
    vault.put("github", &user("bob"), &secret("gho_BOB_TOKEN_VALUE")).unwrap();
    drop(vault);
    let w = warden_testkit::harness::warden_config(&cfg, port);
    warden_testkit::harness::wait_http(&admin);
    let http = reqwest::Client::new();
    let get = || async {
        let r = http.get(format!("{admin}/credentials")).bearer_auth(crate::approval::TOKEN).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = get().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\"") && body.contains("\"bob\"") && !body.contains("gho_"), "{body}");
    assert_eq!(reqwest::get(format!("{admin}/credentials")).await.unwrap().status(), 401);
    let r =
        http.delete(format!("{admin}/credentials/{alice}")).bearer_auth(crate::approval::TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, body) = get().await;
    assert!(!body.contains("\"alice\"") && body.contains("\"bob\""), "{body}");
    let r =
        http.delete(format!("{admin}/credentials/{alice}")).bearer_auth(crate::approval::TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The command line sees the same; revoking an unknown id fails; rotation reseals nothing
    // (one key).
    let run = |args: &[&str]| {
        std::process::Command::new(warden_testkit::harness::bin("warden"))
            .arg("credentials")
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = run(&["list", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains("\"bob\"") && !listed.contains("gho_"), "{listed}");
    assert!(!run(&["revoke", "no-such-id"]).status.success());
    let out = run(&["rotate"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 credential(s)"), "{out:?}");
    drop(w);
    for f in ["warden-data/vault.sqlite", "warden-data/vault.sqlite-wal"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains("TOKEN_VALUE"), "{f} holds a token in the clear");
    }
    // The revocation is on record, by whom and which entry.
    let trail = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let revoked = trail.lines().find(|l| l.contains("\"kind\":\"credential\"") && l.contains("\"revoked\""));
    assert!(revoked.is_some_and(|l| l.contains(&alice) && l.contains("admin-token:")), "{trail}");
}

/// Issue 27: the vault on PostgreSQL is one vault for every replica: what one puts, another
/// reads and revokes; the table holds ciphertext only; an entry moved to another user's row
/// does not open there.
#[test]
fn replicas_share_the_vault_on_postgresql() {
    use warden_gateway::vault::{Secret, Vault};
    use warden_policy::{AuthMethod, Principal};
    let pg = warden_testkit::harness::postgres_server();
    let dir = warden_testkit::harness::tempdir("vault-pg");
    std::fs::write(dir.join("vault.key"), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    let cfg: warden_gateway::config::VaultConfig = toml::from_str(&format!(
        "key = {{ file = {:?} }}\nurl = {:?}\n",
        dir.join("vault.key").display().to_string(),
        pg.url
    ))
    .unwrap();
    let (one, two) = (Vault::open(&cfg, &dir).unwrap(), Vault::open(&cfg, &dir).unwrap());
    let user = |sub: &str| Principal { subject: sub.into(), method: AuthMethod::Jwt, ..Principal::local() };
    let secret =
        |t: &str| Secret { access_token: t.into(), refresh_token: None, expires_at: None, scope: None, client: None };
    let id = one.put("github", &user("alice"), &secret("gho_ALICE_PG_TOKEN")).unwrap();
    one.put("github", &user("bob"), &secret("gho_BOB_PG_TOKEN")).unwrap();
    assert_eq!(two.get("github", &user("alice")).unwrap(), Some(secret("gho_ALICE_PG_TOKEN")));
    assert_eq!(two.list(10).unwrap().len(), 2);
    let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    for r in c.query("SELECT sealed FROM warden_credentials", &[]).unwrap() {
        let sealed: Vec<u8> = r.get(0);
        assert!(!String::from_utf8_lossy(&sealed).contains("PG_TOKEN"), "a token in the clear");
    }
    c.execute(
        "UPDATE warden_credentials SET sealed = (SELECT sealed FROM warden_credentials WHERE subject = 'alice') \
         WHERE subject = 'bob'",
        &[],
    )
    .unwrap();
    assert!(two.get("github", &user("bob")).unwrap_err().contains("does not open"));
    assert!(two.revoke(&id).unwrap());
    assert_eq!(one.get("github", &user("alice")).unwrap(), None, "revoked on one replica, gone on the other");
}
