//! The pages a user's browser goes through to link their account at an upstream
//! (`[upstream.oauth] mode = "user"`, `upstream/user.rs`), on Warden's MCP listener:
//!
//! - `GET /oauth/upstream/{flow}`: whom the link is for (the Warden user, tenant, issuer) and
//!   which upstream, with a button to continue;
//! - `POST /oauth/upstream/{flow}`: the confirmation, from this page only (its `Origin` must be
//!   Warden's); sets a cookie that binds the flow to this browser and sends it to the upstream's
//!   authorization server;
//! - `GET /oauth/upstream/callback`: the authorization server's answer, checked (`state`, the
//!   cookie, `iss`), the code redeemed and the tokens kept in the vault.
//!
//! Defends against: the callback completed by another browser (no cookie, no link; the flow is
//! spent); a page of another site confirming a flow (Origin refused); the pages framed
//! (`frame-ancestors 'none'`), cached (`no-store`) or leaking the flow in a Referer
//! (`no-referrer`); text from the upstream or the user's claims injected into the page (escaped).
//! Does not defend against: a user who confirms a link for someone else's Warden identity (the
//! page names it; see `upstream/user.rs`).

use crate::html::escape;
use crate::upstream::user::{Links, CALLBACK};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const COOKIE: &str = "warden_link";

/// The routes, under `/oauth/upstream/`.
pub fn router(links: Arc<Links>) -> Router {
    Router::new()
        .route(CALLBACK, get(callback))
        .route("/oauth/upstream/{flow}", get(page).post(confirm))
        .with_state(links)
}

/// A page with the headers every one of these gets; `form_to`: where its form may lead.
fn html(status: StatusCode, title: &str, body: &str, form_to: Option<&str>) -> Response {
    let form = match form_to {
        Some(o) => format!("form-action 'self' {o}"),
        None => "form-action 'none'".into(),
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&format!("default-src 'none'; frame-ancestors 'none'; {form}")) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn gone() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Link expired",
        "<p>This link is unknown, used or expired. Make the request again from your client for a new one.</p>",
        None,
    )
}

fn origin_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
}

async fn page(State(links): State<Arc<Links>>, Path(flow): Path<String>) -> Response {
    let shown = links.with_flow(&flow, |f| {
        let p = &f.principal;
        let mut who = format!("<b>{}</b>", escape(&p.subject));
        if let Some(t) = &p.tenant {
            who.push_str(&format!(" of tenant <b>{}</b>", escape(t)));
        }
        if let Some(i) = p.claims.get("iss").and_then(|v| v.as_str()) {
            who.push_str(&format!(" (signed in at {})", escape(i)));
        }
        let body = format!(
            "<p>This links <b>your</b> account at <b>{up}</b> to Warden user {who}: calls that user makes to \
             {up} will act as your account there.</p>\
             <p>Continue only if you are {who} and asked for this from your own MCP client. If someone sent \
             you this link, close this page.</p>\
             <p>Next: the sign-in page of {auth}.</p>\
             <form method=\"post\"><button type=\"submit\">Continue to {auth}</button></form>",
            up = escape(&f.upstream),
            auth = escape(&origin_of(&f.authorization_url).unwrap_or_default()),
        );
        (body, origin_of(&f.authorization_url))
    });
    match shown {
        Some((body, to)) => html(StatusCode::OK, "Link your account", &body, to.as_deref()),
        None => gone(),
    }
}

async fn confirm(State(links): State<Arc<Links>>, Path(flow): Path<String>, headers: HeaderMap) -> Response {
    // Only this page confirms: a form on another site carries its own Origin.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin.is_none() || origin.map(str::to_string) != links.base().and_then(|b| origin_of(&b)) {
        return html(StatusCode::FORBIDDEN, "Refused", "<p>Confirm from the link's own page.</p>", None);
    }
    let mut secret = [0u8; 24];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).is_err() {
        return html(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p>Try again.</p>", None);
    }
    let secret = crate::digest::hex(&secret);
    // Once: a flow confirmed is bound to the browser that confirmed it.
    let to = links.with_flow(&flow, |f| match f.browser {
        Some(_) => None,
        None => {
            f.browser = Some(secret.clone());
            Some(f.authorization_url.clone())
        }
    });
    let Some(Some(to)) = to else { return gone() };
    let secure = if links.base().is_some_and(|b| b.starts_with("https://")) { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={secret}; Path=/oauth/upstream; HttpOnly; SameSite=Lax; Max-Age=600{secure}");
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&cookie)) {
        r.headers_mut().insert(header::LOCATION, loc);
        r.headers_mut().insert(header::SET_COOKIE, c);
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    r
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE).then(|| v.to_string())
    })
}

async fn callback(
    State(links): State<Arc<Links>>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let refused = |why: &str| {
        tracing::info!(reason = why, "account link refused");
        html(StatusCode::BAD_REQUEST, "Not linked", &format!("<p>{}</p>", escape(why)), None)
    };
    if q.len() > 16 || q.iter().any(|(k, v)| k.len() + v.len() > 4096) {
        return refused("The answer is malformed.");
    }
    let state = q.iter().find(|(k, _)| k == "state").map(|(_, v)| v.as_str()).unwrap_or_default();
    let Some(flow) = links.take_by_state(state) else { return gone() };
    // Compared as digests: the time taken says nothing about the secret.
    let digest = |s: &str| crate::digest::sha256(s.as_bytes());
    let bound =
        (flow.browser.as_deref().map(digest)).is_some_and(|b| cookie(&headers).is_some_and(|c| digest(&c) == b));
    if !bound {
        return refused("This link was confirmed in another browser. Make the request again from your client.");
    }
    let code = match crate::upstream::link::code_from(&flow.d, &flow.pending, &q) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let upstream = flow.upstream.clone();
    match links.complete(flow, &code).await {
        Ok(()) => html(
            StatusCode::OK,
            "Account linked",
            &format!("<p>Your account at <b>{}</b> is linked. Return to your client and retry.</p>", escape(&upstream)),
            None,
        ),
        Err(e) => {
            tracing::warn!(upstream = %upstream, error = %e, "account link failed");
            refused(
                "The upstream's authorization server did not give a token. Make the request again from your client.",
            )
        }
    }
}
