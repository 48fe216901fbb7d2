//! Requests Warden's upstreams make, and requests Warden makes itself. CVE-2026-32871 (FastMCP's
//! OpenAPI provider joined a path parameter onto its backend URL without encoding: `../` climbed
//! out of the API prefix, with the provider's own credentials) and credentials replayed on
//! cross-origin redirects (an HTTP client that follows a redirect to another origin with the
//! `Authorization` header it was given). Warden's `segment` guard keeps a value to one path
//! segment, and Warden's own HTTP client never follows redirects.

use crate::common::*;
use axum::extract::Path;
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use warden_testkit::harness::{vulnerable_http, warden};
use warden_testkit::vulnerable::BACKEND_TOKEN;

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A loopback HTTP server with `app`; its base URL.
async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

fn remember(seen: &Seen, path: &str, h: &http::HeaderMap) {
    let auth = h.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    seen.lock().push((path.to_string(), auth));
}

#[tokio::test]
async fn cve_2026_32871_path_parameters_cannot_climb_out_of_the_api() {
    let seen: Seen = Default::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    let backend = serve(
        axum::Router::new()
            .route(
                "/api/v1/users/{id}",
                get(move |Path(id): Path<String>, h: http::HeaderMap| async move {
                    remember(&s1, "/api/v1/users", &h);
                    json!({"id": id, "name": "Ann"}).to_string()
                }),
            )
            .route(
                "/admin/secrets",
                get(move |h: http::HeaderMap| async move {
                    remember(&s2, "/admin/secrets", &h);
                    "ADMIN-SECRETS"
                }),
            ),
    )
    .await;
    let d = dir("ssrf");
    let log = d.join("calls.jsonl");
    let up = vulnerable_http(&[("VULN_BACKEND", &backend), ("VULN_LOG", &log.display().to_string())]);
    let attack = "../../../admin/secrets";

    let direct = client(&up.url).await;
    assert_eq!(text(&direct.tool(1, "get_user", json!({"user_id": attack})).await), "ADMIN-SECRETS");
    let admin_hit = seen.lock().iter().find(|(p, _)| p == "/admin/secrets").cloned();
    assert_eq!(admin_hit.unwrap().1, Some(format!("Bearer {BACKEND_TOKEN}")), "with the server's credential");
    seen.lock().clear();
    std::fs::remove_file(&log).unwrap();

    let guard = "[[guard]]\nserver = \"vuln\"\ntools = [\"get_user\"]\nargument = \"user_id\"\nkind = \"segment\"\nrequired = true\n";
    let w = warden("", &format!("{}{guard}", http_upstream("vuln", &up.url, "")));
    let c = client(&w.url).await;
    assert!(text(&c.tool(1, "get_user", json!({"user_id": "42"})).await).contains("\"Ann\""));
    let attacks =
        [attack, "..", "..%2f..%2f..%2fadmin%2fsecrets", "42/../../../admin/secrets", "42?x=/../admin", "..\\admin"];
    for (i, a) in attacks.iter().enumerate() {
        let v = c.tool(10 + i as i64, "get_user", json!({"user_id": a})).await;
        assert!(refused_by_warden(&v), "{a}: {v}");
    }
    assert!(seen.lock().iter().all(|(p, _)| p == "/api/v1/users"), "{:?}", seen.lock());
    assert_eq!(received(&log).len(), 1);
    let blocked = calls_with_status(&w, "blocked_by_guard");
    assert_eq!(blocked.len(), attacks.len());
    assert!(blocked.iter().all(|b| b["findings"] == json!(["guard.segment:refused"])), "{blocked:?}");
}

#[tokio::test]
async fn upstream_credentials_are_never_replayed_on_a_cross_origin_redirect() {
    let seen: Seen = Default::default();
    let s = seen.clone();
    let elsewhere = serve(axum::Router::new().fallback(move |uri: http::Uri, h: http::HeaderMap| async move {
        remember(&s, uri.path(), &h);
        "{}"
    }))
    .await;
    let target = format!("{elsewhere}/mcp");
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = hits.clone();
    let redirector = serve(axum::Router::new().route(
        "/mcp",
        post(move |h: http::HeaderMap| async move {
            assert_eq!(h.get("authorization").unwrap(), "Bearer upstream-secret-token", "Warden sends its credential");
            h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (http::StatusCode::TEMPORARY_REDIRECT, [("location", target.clone())], "")
        }),
    ))
    .await;
    let d = dir("redirect");
    let secret = d.join("token");
    std::fs::write(&secret, "Bearer upstream-secret-token").unwrap();
    let extra = format!("secret_headers = {{ Authorization = {{ file = {:?} }} }}\n", secret.display().to_string());
    let w = warden("", &http_upstream("moved", &format!("{redirector}/mcp"), &extra));
    let c = client(&w.url).await;
    let v = c.call(1, "tools/list", json!({})).await;
    assert!(v["result"]["tools"].as_array().is_none_or(|t| t.is_empty()), "{v}");
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) > 0, "Warden reached the upstream");
    assert!(seen.lock().is_empty(), "Warden followed the redirect: {:?}", seen.lock());
    assert!(!w.log().contains("upstream-secret-token"), "the credential is never logged");
}
