//! Issue 27, `[upstream.oauth] mode = "user"`: each user links their own account at an upstream
//! that requires OAuth, through the upstream's own authorization server, with Warden as the
//! OAuth client; each user's calls then reach the upstream as that user. Here the upstream is a
//! second Warden (B) that accepts only the IdP's tokens issued for it and logs who called; the
//! IdP signs users in (the test's browser names the user), implements the authorization code
//! grant with PKCE and refresh tokens (`warden-testkit`'s `idp.rs`), and is also the issuer of
//! A's own users, where whoever opens a link signs in first (A's client there: `warden`). The
//! browser is played by an HTTP client that follows each step by hand (no redirects followed,
//! the cookie carried).

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use warden_testkit::harness::{warden, Client, Proc};
use warden_testkit::idp::Idp;

/// A (Warden with `b` in user mode, a vault, callers from the IdP, an audit trail) in front of
/// B (accepting only the IdP's tokens for B).
fn a_in_front_of_b(idp: &Idp, more: &str) -> (Proc, Proc) {
    a_in_front_of(idp, crate::auth::gateway_with(idp, ""), "mcp", more)
}

/// A in front of `b`, asking at most `scope` of it.
fn a_in_front_of(idp: &Idp, b: Proc, scope: &str, more: &str) -> (Proc, Proc) {
    let dir = warden_testkit::harness::tempdir("user-links");
    std::fs::write(dir.join("client-secret"), "s3cret\n").unwrap();
    std::fs::write(dir.join("vault.key"), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    let file = |f: &str| dir.join(f).display().to_string();
    let a = warden(
        "",
        &format!(
            "[[upstream]]\nname = \"b\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {:?}\n\
             [upstream.oauth]\nmode = \"user\"\nclient_id = \"warden\"\nclient_secret = {{ file = {:?} }}\n\
             scope = {scope:?}\nissuer = {:?}\n[vault]\nkey = {{ file = {:?} }}\npath = \"vault.sqlite\"\n\
             [auth]\nrequired_scopes = [\"mcp\"]\n[[auth.jwt]]\nissuer = {:?}\nsign_in_client_id = \"warden\"\n\
             sign_in_client_secret = {{ file = {:?} }}\n[audit]\npath = \"audit.jsonl\"\n{more}",
            b.url,
            file("client-secret"),
            idp.issuer,
            file("vault.key"),
            idp.issuer,
            file("client-secret"),
        ),
    );
    (a, b)
}

async fn client_of(idp: &Idp, a: &Proc, user: &str) -> Client {
    let mut c = idp.claims(&a.url, "mcp");
    c.insert("sub".into(), user.into());
    let mut client = Client::new(&a.url);
    client.bearer = Some(idp.sign_ed(&c, Some("ed1")));
    client.initialize().await;
    client
}

/// The link in a -32042 error (the URL elicitation the issue asks for), checked for shape.
fn link_of(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    let e = &answer["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{answer}");
    assert!(e["elicitationId"].as_str().is_some_and(|s| !s.is_empty()), "{answer}");
    let url = e["url"].as_str().unwrap().to_string();
    assert!(answer["error"]["message"].as_str().unwrap().contains(&url), "the message carries the link too");
    url
}

/// How far a browser gets with a link.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Linked: the callback's page.
    Linked,
    /// Refused at a step: its status and page.
    Refused(u16, String),
}

/// What a hostile hand does to the browser's way through a link.
#[derive(Clone, Copy, PartialEq)]
enum Tamper {
    None,
    /// The sign-in's answer arrives without the cookie (another browser).
    NoCookieAtSignIn,
    /// Signed in, but the upstream's answer arrives without the cookie.
    NoCookieAtCallback,
    /// The upstream's answer is first sent to another upstream's callback.
    OtherUpstreamsCallback,
    /// At the upstream's authorization server, the user consents to these scopes only.
    ConsentTo(&'static str),
}

/// What a browser does with `link`: the page (it names `expect_named`), the confirmation from
/// the page's origin (a cookie, and a redirect to sign in at A's issuer), the sign-in there as
/// `signs_in_as`, back to A, on to the upstream's authorization server (the IdP again) to sign
/// in as `signs_in_as`, and the callback; `tamper` as said.
async fn browse(link: &str, expect_named: &str, signs_in_as: &str, tamper: Tamper) -> Outcome {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    // Not `no-referrer`: a browser would then send the confirmation with `Origin: null`.
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let text = page.text().await.unwrap();
    assert!(text.contains(&format!("<b>{expect_named}</b>")), "the page names whom the link is for: {text}");
    let origin = reqwest::Url::parse(link).unwrap().origin().ascii_serialization();
    let r = http.post(link).header("origin", &origin).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("warden_link_"), "{cookie}");
    let mut next = r.headers()["location"].to_str().unwrap().to_string();
    // Two sign-ins at the IdP: as A's user, then at the upstream's authorization server.
    for step in ["sign-in", "upstream"] {
        assert!(next.contains("code_challenge_method=S256") && next.contains("resource="), "{step}: {next}");
        let consent = match (step, tamper) {
            ("upstream", Tamper::ConsentTo(g)) => format!("&grant={}", g.replace(' ', "+")),
            _ => String::new(),
        };
        let r = http.get(format!("{next}&user={signs_in_as}{consent}")).send().await.unwrap();
        assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
        let back = r.headers()["location"].to_str().unwrap().to_string();
        assert!(back.starts_with(&origin), "back to Warden: {back}");
        if step == "upstream" && tamper == Tamper::OtherUpstreamsCallback {
            let elsewhere = back.replace("/callback/b?", "/callback/other?");
            assert_ne!(elsewhere, back);
            let r = http.get(&elsewhere).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(r.status(), 404, "another upstream's callback knows no such flow");
        }
        let drop =
            matches!((step, tamper), ("sign-in", Tamper::NoCookieAtSignIn) | ("upstream", Tamper::NoCookieAtCallback));
        let mut req = http.get(&back);
        if !drop {
            req = req.header("cookie", &cookie);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        match (step, status) {
            ("sign-in", 303) => next = r.headers()["location"].to_str().unwrap().to_string(),
            ("upstream", 200) => return Outcome::Linked,
            _ => return Outcome::Refused(status, r.text().await.unwrap()),
        }
    }
    unreachable!()
}

fn echo_text(r: &Value) -> String {
    r["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn each_user_links_their_own_account_and_only_a_revoked_link_stops() {
    let idp = Idp::start().await;
    let (admin_cfg, admin) = crate::approval::admin_section();
    let (a, b) = a_in_front_of_b(&idp, &admin_cfg);
    let alice = client_of(&idp, &a, "alice").await;
    let bob = client_of(&idp, &a, "bob").await;
    // Before linking: the listing offers the tool that answers with the link to open (this
    // client takes no URL elicitation), and a call of B's tool answers with the link.
    let listed = alice.call(1, "tools/list", json!({})).await;
    let offered = listed["result"]["tools"][0]["name"].clone();
    assert_eq!(offered, "link_account_b", "{listed}");
    let text = echo_text(&alice.tool(6, "link_account_b", json!({})).await);
    let first = text.split_whitespace().find(|w| w.starts_with("http")).unwrap().to_string();
    let link = link_of(&alice.tool(2, "echo", json!({"text": "hi"})).await);
    assert_eq!(link, first, "one waiting link per user, handed out again");
    assert!(link.starts_with(a.url.trim_end_matches("/mcp")), "the link is Warden's own page: {link}");
    let bobs = link_of(&bob.tool(1, "echo", json!({"text": "hi"})).await);
    assert_ne!(bobs, link, "each user their own link");
    // Alice links; a call now reaches B as alice (B accepts only the IdP's tokens for B).
    assert_eq!(browse(&link, "alice", "alice", Tamper::None).await, Outcome::Linked);
    let r = alice.tool(3, "echo", json!({"text": "as alice"})).await;
    assert_eq!(echo_text(&r), "as alice", "{r}");
    assert!(b.log().contains("subject=alice"), "{}", b.log());
    // Bob is still not linked, and never rides on alice's account.
    link_of(&bob.tool(2, "echo", json!({"text": "hi"})).await);
    assert!(!b.log().contains("subject=bob"));
    // Bob links, signing in as bob.
    assert_eq!(browse(&bobs, "bob", "bob", Tamper::None).await, Outcome::Linked);
    assert_eq!(echo_text(&bob.tool(3, "echo", json!({"text": "as bob"})).await), "as bob");
    assert!(b.log().contains("subject=bob"), "{}", b.log());
    assert_eq!(idp.state.redeemed.load(Ordering::SeqCst), 4, "two sign-ins, two links");
    // The listing works now, and shows B's tools.
    let listed = alice.call(4, "tools/list", json!({})).await;
    assert!(listed["result"]["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "echo")), "{listed}");
    // Each call's record names the linked credential (a digest), different per user.
    let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
    let cred = |who: &str| {
        trail
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["kind"] == "call" && e["subject"] == who && e["status"] == "success" && e["server"] == "b")
            .map(|e| e["credential"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let (ca, cb) = (cred("alice"), cred("bob"));
    assert!(ca.starts_with("user:") && ca.len() == "user:".len() + 12, "{ca}");
    assert_ne!(ca, cb);
    // The vault holds no token in the clear.
    for f in ["vault.sqlite", "vault.sqlite-wal"] {
        let bytes = std::fs::read(a.dir.join(f)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for t in idp.state.issued.lock().iter() {
            assert!(!text.contains(&t[..t.len().min(40)]), "{f} holds a token in the clear");
        }
    }
    // The operator revokes alice's link: her next call gets a link again; bob's goes on.
    let http = reqwest::Client::new();
    let listed: Value = (http.get(format!("{admin}/credentials")).bearer_auth(crate::approval::TOKEN).send().await)
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = listed["credentials"].as_array().cloned().unwrap_or_default();
    let id = entries.iter().find(|e| e["subject"] == "alice").and_then(|e| e["id"].as_str()).unwrap().to_string();
    let r = http.delete(format!("{admin}/credentials/{id}")).bearer_auth(crate::approval::TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    link_of(&alice.tool(5, "echo", json!({"text": "after revoke"})).await);
    assert_eq!(echo_text(&bob.tool(4, "echo", json!({"text": "still bob"})).await), "still bob");
    // Each user sees and revokes only their own links, with the token they call with.
    let links = format!("{}/oauth/upstream/links", a.url.trim_end_matches("/mcp"));
    let mine = |c: &Client| {
        let (http, links, token) = (http.clone(), links.clone(), c.bearer.clone().unwrap());
        async move { http.get(&links).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(mine(&alice).await["links"], json!([]));
    let bobs_links = mine(&bob).await;
    assert_eq!(bobs_links["links"][0]["upstream"], "b", "{bobs_links}");
    assert!(!bobs_links.to_string().contains("eyJ"), "no token shown: {bobs_links}");
    assert_eq!(http.get(&links).send().await.unwrap().status(), 401, "only for a caller");
    let unlink = |c: &Client| {
        let (http, links, token) = (http.clone(), links.clone(), c.bearer.clone().unwrap());
        async move { http.delete(format!("{links}/b")).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(unlink(&alice).await, 404, "alice has no link (and cannot touch bob's)");
    assert_eq!(echo_text(&bob.tool(5, "echo", json!({"text": "bob again"})).await), "bob again");
    assert_eq!(unlink(&bob).await, 200);
    link_of(&bob.tool(6, "echo", json!({"text": "after unlink"})).await);
    // Linking and unlinking are on record, naming the user and the upstream (the trail is
    // written behind the answers: read until it shows them, for a while).
    let on_record = |who: &str, what: &str| {
        let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
        trail
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["kind"] == "credential" && e["subject"] == who && e["detail"] == what && e["server"] == "b")
    };
    for (who, what) in [("alice", "linked"), ("bob", "linked"), ("bob", "revoked")] {
        for _ in 0..50 {
            if on_record(who, what) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap();
        assert!(on_record(who, what), "{who} {what}:\n{trail}");
    }
}

/// A client that cannot be asked to open a link (no URL elicitation, as most clients today)
/// still gets every other upstream's tools, and in place of the unlinked upstream's, one tool of
/// Warden's whose call answers with the link. A call to another upstream's tool is never held up
/// by the unlinked one, even as a session's first request. Once linked, the upstream's tools are
/// listed instead, and a 2025 session is told the list changed.
#[tokio::test]
async fn a_client_that_cannot_be_asked_gets_the_other_tools_and_a_link_tool() {
    let idp = Idp::start().await;
    let plain = warden_testkit::harness::fixture_stdio_upstream("plain", Some("plain"), "");
    let (a, _b) = a_in_front_of_b(&idp, &plain);
    let alice = client_of(&idp, &a, "alice").await;
    let r = alice.tool(1, "plain__echo", json!({"text": "first"})).await;
    assert_eq!(echo_text(&r), "first", "a call to another upstream goes through: {r}");
    let names = |listed: &Value| -> Vec<String> {
        let tools = listed["result"]["tools"].as_array().cloned().unwrap_or_else(|| panic!("{listed}"));
        tools.iter().map(|t| t["name"].as_str().unwrap_or_default().to_string()).collect()
    };
    let listed = alice.call(2, "tools/list", json!({})).await;
    let before = names(&listed);
    assert!(before.contains(&"plain__echo".to_string()), "{listed}");
    assert!(before.contains(&"link_account_b".to_string()) && !before.contains(&"echo".to_string()), "{listed}");
    let offered = listed["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "link_account_b").unwrap();
    assert_eq!(offered["annotations"]["readOnlyHint"], true, "{offered}");
    assert!(offered["description"].as_str().unwrap().contains("b"), "{offered}");
    // Its call answers with the link (a result the model reads, not an error).
    let r = alice.tool(3, "link_account_b", json!({})).await;
    assert_ne!(r["result"]["isError"], true, "{r}");
    let text = echo_text(&r);
    let link = text.split_whitespace().find(|w| w.starts_with("http")).unwrap_or_else(|| panic!("{r}")).to_string();
    assert!(link.starts_with(a.url.trim_end_matches("/mcp")), "Warden's own page: {link}");
    // Bob's call of the same tool gets bob's link, never alice's.
    let bob = client_of(&idp, &a, "bob").await;
    let bobs = echo_text(&bob.tool(1, "link_account_b", json!({})).await);
    let bobs = bobs.split_whitespace().find(|w| w.starts_with("http")).unwrap_or_else(|| panic!("{bobs}"));
    assert_ne!(bobs, link);
    // The session's stream hears that the list changed once alice has linked.
    let get = alice.request(reqwest::Method::GET).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(get.status(), 200);
    let mut events = warden_testkit::harness::SseMessages::new(get, std::time::Duration::from_secs(30));
    assert_eq!(browse(&link, "alice", "alice", Tamper::None).await, Outcome::Linked);
    events.until(|m| m["method"] == "notifications/tools/list_changed").await;
    let after = names(&alice.call(4, "tools/list", json!({})).await);
    assert!(after.contains(&"echo".to_string()) && after.contains(&"plain__echo".to_string()), "{after:?}");
    assert!(!after.contains(&"link_account_b".to_string()), "{after:?}");
    let r = alice.tool(5, "link_account_b", json!({})).await;
    assert!(echo_text(&r).contains("already linked"), "{r}");
    // Bob, still not linked, calls B's tool by name: the answer carries his link.
    link_of(&bob.tool(2, "echo", json!({"text": "hi"})).await);
}

/// Hostile browsers: a form on another site (or of no origin) cannot confirm a flow; answers
/// without the cookie of the browser that confirmed (at the sign-in or at the callback) link
/// nothing and spend the flow; a state nobody issued is unknown; an answer sent to another
/// upstream's callback is not taken there; the page escapes what it shows.
#[tokio::test]
async fn a_link_completes_only_in_the_browser_that_confirmed_it() {
    let idp = Idp::start().await;
    let (a, _b) = a_in_front_of_b(&idp, "");
    let alice = client_of(&idp, &a, "alice").await;
    let link = link_of(&alice.tool(1, "echo", json!({"text": "hi"})).await);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for origin in [Some("http://evil.example"), None] {
        let mut req = http.post(&link);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), 403, "confirmed from {origin:?}");
    }
    // Confirmed, but the sign-in's answer arrives in a browser without the cookie.
    let Outcome::Refused(status, page) = browse(&link, "alice", "alice", Tamper::NoCookieAtSignIn).await else {
        panic!()
    };
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("another browser"), "{page}");
    link_of(&alice.tool(2, "echo", json!({"text": "still not linked"})).await);
    assert_eq!(idp.state.redeemed.load(Ordering::SeqCst), 0, "no code was redeemed");
    // The flow is spent: its page is gone; a new request gives a new link.
    assert_eq!(http.get(&link).send().await.unwrap().status(), 404);
    let fresh = link_of(&alice.tool(3, "echo", json!({"text": "again"})).await);
    assert_ne!(fresh, link);
    // Signed in as alice, but the upstream's answer arrives without the cookie: refused at the
    // callback, nothing linked (only the sign-in's code was redeemed).
    let Outcome::Refused(status, page) = browse(&fresh, "alice", "alice", Tamper::NoCookieAtCallback).await else {
        panic!()
    };
    assert_eq!(status, 400, "{page}");
    assert_eq!(idp.state.redeemed.load(Ordering::SeqCst), 1);
    link_of(&alice.tool(4, "echo", json!({"text": "still not linked"})).await);
    let cb = format!("{}/oauth/upstream/callback/b?code=x&state=forged", a.url.trim_end_matches("/mcp"));
    assert_eq!(http.get(&cb).send().await.unwrap().status(), 404);
    // An answer sent to another upstream's callback first is not taken there; the right one
    // still completes.
    let fresh = link_of(&alice.tool(5, "echo", json!({"text": "again"})).await);
    assert_eq!(browse(&fresh, "alice", "alice", Tamper::OtherUpstreamsCallback).await, Outcome::Linked);
    assert_eq!(echo_text(&alice.tool(6, "echo", json!({"text": "linked"})).await), "linked");
    // Confirmation from a page of no origin (`Origin: null`, what `no-referrer` would make a
    // browser send) is refused; `Sec-Fetch-Site: same-origin` without an Origin is the page's.
    let carol = client_of(&idp, &a, "carol").await;
    let fresh = link_of(&carol.tool(1, "echo", json!({"text": "hi"})).await);
    assert_eq!(http.post(&fresh).header("origin", "null").send().await.unwrap().status(), 403);
    assert_eq!(http.post(&fresh).header("sec-fetch-site", "cross-site").send().await.unwrap().status(), 403);
    assert_eq!(http.post(&fresh).header("sec-fetch-site", "same-origin").send().await.unwrap().status(), 303);
    // The page escapes what it shows (the user's subject here).
    let odd = client_of(&idp, &a, "<img src=x onerror=alert(1)>").await;
    let fresh = link_of(&odd.tool(1, "echo", json!({"text": "hi"})).await);
    let page = http.get(&fresh).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;") && !page.contains("<img"), "{page}");
    // Confirmed once only: a second confirmation (another browser) is refused.
    let fresh = link_of(&client_of(&idp, &a, "erin").await.tool(1, "echo", json!({"text": "hi"})).await);
    let origin = reqwest::Url::parse(&fresh).unwrap().origin().ascii_serialization();
    assert_eq!(http.post(&fresh).header("origin", &origin).send().await.unwrap().status(), 303);
    assert_eq!(http.post(&fresh).header("origin", &origin).send().await.unwrap().status(), 404);
}

/// Tokens expire and are refreshed (one refresh per expiry, not per call); a grant the
/// authorization server withdrew makes the link forgotten, and the user gets a link again.
#[tokio::test]
async fn linked_tokens_are_refreshed_and_a_withdrawn_grant_asks_for_a_new_link() {
    let idp = Idp::start().await;
    // Four-second tokens: refreshed once two seconds have gone (half their life; times are
    // whole seconds).
    idp.state.access_ttl.store(4, Ordering::SeqCst);
    let (a, _b) = a_in_front_of_b(&idp, "");
    let alice = client_of(&idp, &a, "alice").await;
    let link = link_of(&alice.tool(1, "echo", json!({"text": "hi"})).await);
    assert_eq!(browse(&link, "alice", "alice", Tamper::None).await, Outcome::Linked);
    assert_eq!(echo_text(&alice.tool(2, "echo", json!({"text": "x"})).await), "x");
    assert_eq!(idp.state.refreshes.load(Ordering::SeqCst), 0, "a fresh token is used as it is");
    // Past half its life, concurrent calls share one refresh.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let alice = std::sync::Arc::new(alice);
    let calls = (0..6).map(|i| {
        let c = alice.clone();
        tokio::spawn(async move { c.tool(10 + i, "echo", json!({"text": "y"})).await })
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(echo_text(&r.unwrap()), "y");
    }
    assert_eq!(idp.state.refreshes.load(Ordering::SeqCst), 1, "one refresh for the six calls");
    // The IdP withdraws alice's grant: once the token needs refreshing, the link is forgotten
    // and a new one handed out.
    idp.state.revoke_refresh("alice");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    link_of(&alice.tool(20, "echo", json!({"text": "z"})).await);
}

/// A 2026-07-28 client that takes URL elicitation is asked to open the link (`input_required`
/// with `elicitation/create`, mode `url`); once the user has linked and the client retries with
/// the user's acceptance, the same call goes on and reaches B as the user. A 2026 client that
/// does not take URL elicitation gets the error with the link.
#[tokio::test]
async fn a_2026_client_is_asked_to_open_the_link_and_its_call_goes_on() {
    use crate::stateless::{meta_with, post};
    let idp = Idp::start().await;
    let (a, b) = a_in_front_of_b(&idp, "");
    let mut claims = idp.claims(&a.url, "mcp");
    claims.insert("sub".into(), "carol".into());
    let token = idp.sign_ed(&claims, Some("ed1"));
    let call = |caps: Value| json!({"name": "echo", "arguments": {"text": "as carol"}, "_meta": meta_with(caps)});
    let (_, plain) = post(&a.url, Some(&token), "tools/call", call(json!({})), &[]).await;
    let first = link_of(&plain);
    let caps = json!({"elicitation": {"url": {}}});
    // A 2026 listing cannot ask: it is not failed for want of the link (the user may not want
    // B), it offers the stand-in, whose call asks.
    let (_, listed) = post(&a.url, Some(&token), "tools/list", json!({"_meta": meta_with(caps.clone())}), &[]).await;
    assert_eq!(listed["result"]["tools"][0]["name"], "link_account_b", "{listed}");
    let stand_in = json!({"name": "link_account_b", "arguments": {}, "_meta": meta_with(caps.clone())});
    let (_, asked) = post(&a.url, Some(&token), "tools/call", stand_in.clone(), &[]).await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let (_, r1) = post(&a.url, Some(&token), "tools/call", call(caps.clone()), &[]).await;
    assert_eq!(r1["result"]["resultType"], "input_required", "{r1}");
    let (k, q) =
        r1["result"]["inputRequests"].as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    assert_eq!((q["method"].as_str(), q["params"]["mode"].as_str()), (Some("elicitation/create"), Some("url")), "{q}");
    let link = q["params"]["url"].as_str().unwrap().to_string();
    assert_eq!(link, first, "the same waiting link");
    assert_eq!(browse(&link, "carol", "carol", Tamper::None).await, Outcome::Linked);
    let mut retry = call(caps);
    retry["inputResponses"] = json!({ k: {"action": "accept"} });
    retry["requestState"] = r1["result"]["requestState"].clone();
    let (_, r2) = post(&a.url, Some(&token), "tools/call", retry, &[]).await;
    assert_eq!(echo_text(&r2), "as carol", "{r2}");
    let (_, done) = post(&a.url, Some(&token), "tools/call", stand_in, &[]).await;
    assert!(echo_text(&done).contains("already linked"), "{done}");
    assert!(b.log().contains("subject=carol"), "{}", b.log());
}

/// MCP's URL elicitation phishing case: mallory gets a link for herself and sends it to bob,
/// who opens it thinking it is his. Whoever opens a link signs in at the Warden user's issuer
/// first: bob signs in as bob, not mallory, and nothing is linked (bob's upstream account never
/// lands under mallory). A caller without a token (an API key) cannot link at all.
#[tokio::test]
async fn a_link_sent_to_someone_else_links_nothing() {
    let idp = Idp::start().await;
    let (key, entry) = warden_gateway::auth::apikey::generate("svc", &["mcp".into()], None, None);
    let (a, b) = a_in_front_of_b(&idp, "");
    let mallory = client_of(&idp, &a, "mallory").await;
    let link = link_of(&mallory.tool(1, "echo", json!({"text": "hi"})).await);
    let Outcome::Refused(status, page) = browse(&link, "mallory", "bob", Tamper::None).await else { panic!("linked") };
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("You signed in as bob"), "{page}");
    assert_eq!(idp.state.redeemed.load(Ordering::SeqCst), 1, "only the sign-in's code: no upstream code redeemed");
    link_of(&mallory.tool(2, "echo", json!({"text": "still not linked"})).await);
    assert!(!b.log().contains("subject=bob") && !b.log().contains("subject=mallory"));
    drop((a, b));
    let (a, _b) = a_in_front_of_b(&idp, &entry);
    let mut svc = Client::new(&a.url);
    svc.bearer = Some(key);
    svc.initialize().await;
    let r = svc.tool(1, "echo", json!({"text": "as whom?"})).await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("API keys and certificates cannot"), "{r}");
}

/// A 2025-11-25 session whose client takes URL elicitation: the request is answered with an
/// `elicitation/create` (mode `url`) on its stream; the client accepts (the user agreed to
/// open the page), the user links in the browser meanwhile, and the same call then goes on.
/// A listing whose link the user declines goes on without that upstream.
#[tokio::test]
async fn a_2025_client_that_takes_url_elicitation_is_asked_and_its_call_waits_for_the_link() {
    use warden_protocol::sse;
    let idp = Idp::start().await;
    let (a, b) = a_in_front_of_b(&idp, "");
    let mut claims = idp.claims(&a.url, "mcp");
    claims.insert("sub".into(), "dave".into());
    let mut c = Client::new(&a.url);
    c.bearer = Some(idp.sign_ed(&claims, Some("ed1")));
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}},
                      "clientInfo": {"name": "url-client", "version": "1"}});
    let r = c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})).await;
    c.session = r.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(c.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.status, 202);
    // Ask, answering each elicitation with `reply` (and linking in the browser when accepted).
    let ask = |id: i64, method: &str, params: Value, reply: Value| {
        let c = &c;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        async move {
            let mut resp = c.post_stream(&body).await;
            let mut d = sse::Decoder::new(1 << 20);
            let mut asked = Vec::new();
            let mut browser = None;
            loop {
                let chunk =
                    tokio::time::timeout(std::time::Duration::from_secs(20), resp.chunk()).await.unwrap().unwrap();
                let Some(chunk) = chunk else { panic!("stream ended without an answer") };
                for ev in d.feed(&chunk).unwrap() {
                    let Ok(m) = serde_json::from_str::<Value>(&ev.data) else { continue };
                    if m["method"] == "elicitation/create" {
                        asked.push(m["params"].clone());
                        if reply["action"] == "accept" {
                            let url = m["params"]["url"].as_str().unwrap().to_string();
                            browser =
                                Some(tokio::spawn(async move { browse(&url, "dave", "dave", Tamper::None).await }));
                        }
                        let r = c.post(&json!({"jsonrpc": "2.0", "id": m["id"], "result": reply})).await;
                        assert_eq!(r.status, 202);
                    } else if m["id"] == json!(id) {
                        if let Some(b) = browser {
                            assert_eq!(b.await.unwrap(), Outcome::Linked);
                        }
                        return (asked, m);
                    }
                }
            }
        }
    };
    let (asked, listed) = ask(1, "tools/list", json!({}), json!({"action": "decline"})).await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["mode"], "url");
    assert_eq!(listed["result"]["tools"], json!([]), "declined: listed without b: {listed}");
    let (asked, answer) =
        ask(2, "tools/call", json!({"name": "echo", "arguments": {"text": "as dave"}}), json!({"action": "accept"}))
            .await;
    assert_eq!(asked.len(), 1);
    assert!(asked[0]["url"].as_str().unwrap().contains("/oauth/upstream/"), "{asked:?}");
    assert_eq!(echo_text(&answer), "as dave", "{answer}");
    assert!(b.log().contains("subject=dave"));
}

/// Scope step-up: the user consented to less than the upstream needs; the upstream answers 403
/// `insufficient_scope`; the user's next request gets a link again, asking what was granted
/// and what the upstream named (within `oauth.scope`); once linked again, calls go through.
#[tokio::test]
async fn an_upstream_that_needs_more_scope_gets_a_link_again_asking_for_it() {
    let idp = Idp::start().await;
    let trust = format!("[auth]\nrequired_scopes = [\"mcp\", \"extra\"]\n[[auth.jwt]]\nissuer = {:?}\n", idp.issuer);
    let b = warden("", &format!("{}\n{trust}", warden_testkit::harness::fixture_stdio_upstream("fx", Some(""), "")));
    let (a, b) = a_in_front_of(&idp, b, "mcp extra", "");
    let alice = client_of(&idp, &a, "alice").await;
    let link = link_of(&alice.tool(1, "echo", json!({"text": "hi"})).await);
    assert_eq!(browse(&link, "alice", "alice", Tamper::ConsentTo("mcp offline_access")).await, Outcome::Linked);
    // B refuses the token (it lacks `extra`): this call fails (once B's 403 is seen, with the
    // link to grant more)…
    let r = alice.tool(2, "echo", json!({"text": "not yet"})).await;
    assert!(r.get("error").is_some(), "{r}");
    assert!(!b.log().contains("subject=alice"));
    // …and so do the next ones, with the same link, until the user links again.
    let again = link_of(&alice.tool(3, "echo", json!({"text": "link again"})).await);
    assert_ne!(again, link);
    if r["error"]["code"] == -32042 {
        assert_eq!(link_of(&r), again);
    }
    assert_eq!(link_of(&alice.tool(4, "echo", json!({"text": "link again"})).await), again);
    assert_eq!(browse(&again, "alice", "alice", Tamper::None).await, Outcome::Linked);
    // (A failed connect backs off for half a second.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(echo_text(&alice.tool(5, "echo", json!({"text": "with extra"})).await), "with extra");
    assert!(b.log().contains("subject=alice"), "{}", b.log());
}

/// The link flow in a real browser (headless Chromium driven by `tests/console/link.py`): what
/// a browser does with the page's form, its Origin and Referrer-Policy, the cookies across the
/// two sign-ins at the IdP's own forms, is what decides whether anyone can link (a review found
/// that `no-referrer` made Chromium send `Origin: null`, refused: no one could have linked).
#[test]
fn a_user_links_their_account_in_a_real_browser() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(Idp::start());
    let (a, b) = a_in_front_of_b(&idp, "");
    let mut claims = idp.claims(&a.url, "mcp");
    claims.insert("sub".into(), "frank".into());
    let token = idp.sign_ed(&claims, Some("ed1"));
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    let out = std::process::Command::new(python)
        .arg(root.join("tests/console/link.py"))
        .args([&a.url, &token, "frank"])
        .arg(root.join("target/console"))
        .output()
        .expect("run tests/console/link.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed\n{stdout}\n{stderr}\nwarden log:\n{}", a.log());
    assert!(stdout.contains("link: all checks passed"), "{stdout}");
    assert!(b.log().contains("subject=frank"), "{}", b.log());
    drop(rt);
}
