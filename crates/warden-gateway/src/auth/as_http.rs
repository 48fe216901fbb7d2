//! The built-in authorization server's HTTP answers (JSON, OAuth errors, never cached), its
//! random tokens, and which redirect URIs a client may register. A leaf of `auth/`: the
//! authorization and registration endpoints both use it.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

pub(super) fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn json_response(status: StatusCode, v: Value) -> Response<Body> {
    no_store(
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            .body(Body::from(v.to_string()))
            .expect("static response parts"),
    )
}

pub(super) fn oauth_error(status: StatusCode, error: &str, desc: &str) -> Response<Body> {
    json_response(status, json!({"error": error, "error_description": desc}))
}

pub(super) fn random_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// A redirect URI a client may register: absolute, no fragment; `https`, `http` to loopback, or a
/// private-use scheme (native apps); never `javascript:`, `data:` or `file:`.
pub(super) fn valid_redirect(u: &str) -> bool {
    let Ok(p) = reqwest::Url::parse(u) else { return false };
    if p.fragment().is_some() || u.len() > 2000 {
        return false;
    }
    // A host a browser's policies can name: letters, digits, hyphens and dots, or an address
    // (not `*`, quotes or other oddities a consent page's CSP would have to repeat).
    let plain = match p.host() {
        Some(url::Host::Domain(d)) => d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        Some(_) => true,
        None => p.scheme() != "https" && p.scheme() != "http",
    };
    if !plain {
        return false;
    }
    match p.scheme() {
        "https" => p.host().is_some(),
        "http" => crate::config::check_remote_url(u).is_ok(),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ftp" | "ws" | "wss" => false,
        _ => true,
    }
}
