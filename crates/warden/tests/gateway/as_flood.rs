//! The built-in authorization server under an unauthenticated flood (issue 19, finding 5):
//! registrations are limited per address, authorization requests in progress are bounded per
//! address (its own oldest make way), and form bodies are bounded — while the real flow keeps
//! working.

use crate::auth::builtin;
use serde_json::json;

#[tokio::test]
async fn registration_and_authorization_floods_are_bounded() {
    let a = builtin::start();
    let redirect = "http://127.0.0.1:9/callback";
    let mut statuses = Vec::new();
    let mut first = None;
    for _ in 0..25 {
        let r = a
            .http
            .post(format!("{}/register", a.base))
            .json(&json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "3600");
        } else if first.is_none() {
            first = r.json::<serde_json::Value>().await.unwrap()["client_id"].as_str().map(String::from);
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 20, "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let client = first.unwrap();

    // Authorization requests in progress: 50 per address; past them the address's own oldest
    // request makes way (a flood displaces only its own requests, nobody is locked out).
    let (_, challenge) = builtin::pkce();
    let q = vec![
        ("response_type", "code".to_string()),
        ("client_id", client.clone()),
        ("redirect_uri", redirect.to_string()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_string()),
        ("scope", "mcp".to_string()),
    ];
    let first = a.authorize(&q).await;
    assert_eq!(first.status(), 200);
    for _ in 0..55 {
        assert_eq!(a.authorize(&q).await.status(), 200);
    }
    let last = a.authorize(&q).await;
    let (status, _) = a.consent(first, "alice", "correct horse battery", "approve").await;
    assert_eq!(status, 400, "the oldest request made way for the newer ones");
    let (status, q) = a.consent(last, "alice", "correct horse battery", "approve").await;
    assert_eq!(status, 303, "the newest still completes");
    assert!(builtin::get(&q, "code").is_some(), "{q:?}");

    // Form and registration bodies are bounded (64 KiB).
    let big = "x".repeat(100 << 10);
    let r = a.http.post(format!("{}/token", a.base)).form(&[("grant_type", big.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = a.http.post(format!("{}/register", a.base)).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);

    // The state file holds the 20 clients, written off the request path but before the answer.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.w.dir.join("warden-data/as-state.json")).expect("state file beside the config"),
    )
    .unwrap();
    assert_eq!(state["clients"].as_object().unwrap().len(), 20);
    assert!(state["clients"][&client]["registered"].as_u64().unwrap() > 0);
}
