//! The built-in authorization server under an unauthenticated flood (issue 19, finding 5):
//! registrations are limited per address, authorization requests in progress are capped per
//! address, and form bodies are bounded — while the real flow keeps working.

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

    // Authorization requests in progress: 50 per address, then 429 (a page, never a redirect).
    let (_, challenge) = builtin::pkce();
    let q = vec![
        ("response_type", "code".to_string()),
        ("client_id", client.clone()),
        ("redirect_uri", redirect.to_string()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_string()),
    ];
    let mut pending = Vec::new();
    for _ in 0..55 {
        pending.push(a.authorize(&q).await.status().as_u16());
    }
    assert_eq!(pending.iter().filter(|s| **s == 200).count(), 50, "{pending:?}");
    assert!(pending[50..].iter().all(|s| *s == 429), "{pending:?}");

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
