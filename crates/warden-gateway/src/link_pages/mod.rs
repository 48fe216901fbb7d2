//! The pages a user's browser goes through to link their account at an upstream
//! (`[upstream.oauth] mode = "user"`, `upstream/user/`), on Warden's MCP listener:
//!
//! - `GET /oauth/upstream/{flow}`: whom the link is for (the Warden user, tenant, issuer) and
//!   which upstream, with a button to continue;
//! - `POST /oauth/upstream/{flow}`: the confirmation, from this page only (its `Origin` must be
//!   Warden's); sets a cookie that binds the flow to this browser and sends it to sign in at the
//!   Warden user's own issuer (`sign_in.rs`);
//! - `GET /oauth/upstream/signed-in`: the sign-in's answer; whoever signed in must be the user
//!   the link is for; then on to the upstream's authorization server;
//! - `GET /oauth/upstream/callback`: the upstream's authorization server's answer, checked
//!   (`state`, the cookie, `iss`, the sign-in done), the code redeemed, the tokens kept in the
//!   vault, and the link on record (`credential`, `linked`);
//! - `GET /oauth/upstream/links`, `DELETE /oauth/upstream/links/{upstream}`: the user's own links
//!   (`own.rs`);
//! - `GET /oauth/upstream/client`: Warden's Client ID Metadata Document, when its pages are on
//!   `https` (authorization servers that take them need no registration).
//!
//! Defends against: a link opened by someone else than its user (the sign-in names another
//! principal: refused, the flow dropped); the answers completed in another browser (no cookie:
//! refused, the flow spent); a page of another site confirming a flow (Origin refused); the
//! pages framed (`frame-ancestors 'none'`), cached (`no-store`) or leaking the flow in a
//! Referer to another site (`same-origin`; the redirects say `no-referrer`); text from the upstream or the user's claims injected into the page
//! (escaped; no script runs on these pages).
//! Does not defend against: someone holding the user's own credentials at their issuer.

mod own;
mod sign_in;

use crate::auth::Authenticator;
use crate::html::escape;
use crate::upstream::user::{Links, CALLBACKS, CLIENT_DOCUMENT, SIGNED_IN};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The cookie that binds flow `id` to the browser that confirmed it: one per flow (two links
/// at once do not undo each other), `__Host-` on https (no sibling host or path can set it).
fn cookie_name(links: &Links, id: &str) -> String {
    let tag = &crate::digest::hex(&crate::digest::sha256(id.as_bytes()))[..12];
    let host = if https(links) { "__Host-" } else { "" };
    format!("{host}warden_link_{tag}")
}

fn https(links: &Links) -> bool {
    links.base().is_some_and(|b| b.starts_with("https://"))
}

/// The cookie for flow `id`: `value`, or cleared (`None`).
fn set_cookie(links: &Links, id: &str, value: Option<&str>) -> String {
    let name = cookie_name(links, id);
    let (path, secure) = if https(links) { ("/", "; Secure") } else { ("/oauth/upstream", "") };
    match value {
        Some(v) => format!("{name}={v}; Path={path}; HttpOnly; SameSite=Lax; Max-Age=600{secure}"),
        None => format!("{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

#[derive(Clone)]
struct Pages {
    links: Arc<Links>,
    auth: Arc<Authenticator>,
    audit: Arc<crate::audit::Audit>,
    /// Warden's own resource: what the sign-in's token must be for.
    resource: String,
}

/// The routes, under `/oauth/upstream/`. `resource`: Warden's MCP resource URI.
pub fn router(
    links: Arc<Links>,
    auth: Arc<Authenticator>,
    audit: Arc<crate::audit::Audit>,
    resource: String,
) -> Router {
    if let (Some(b), Some(base)) = (&auth.builtin, links.base()) {
        b.set_link(vec![format!("{base}{SIGNED_IN}")]);
    }
    Router::new()
        .route(&format!("{CALLBACKS}{{upstream}}"), get(callback))
        .route(SIGNED_IN, get(signed_in))
        .route(CLIENT_DOCUMENT, get(client_document))
        .route("/oauth/upstream/links", get(own::list))
        .route("/oauth/upstream/links/{upstream}", axum::routing::delete(own::revoke))
        .route("/oauth/upstream/{flow}", get(page).post(confirm))
        .with_state(Pages { links, auth, audit, resource })
}

/// A page with the headers every one of these gets; `form`: whether it has the confirmation
/// form (whose answer redirects to an issuer's origin, which `form-action` would have to name:
/// browsers apply it to redirects, and the origin is not known before the answer).
fn html(status: StatusCode, title: &str, body: &str, form: bool) -> Response {
    let form = if form { "" } else { "; form-action 'none'" };
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
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends the confirmation
    // with `Origin: null`, which the check below must refuse. Nothing goes to another site.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&format!("default-src 'none'; frame-ancestors 'none'{form}")) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

async fn client_document(State(pg): State<Pages>) -> Response {
    match pg.links.cimd() {
        Some(doc) => {
            let mut r = axum::Json(doc).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn gone() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Link expired",
        "<p>This link is unknown, used or expired. Make the request again from your client for a new one.</p>",
        false,
    )
}

fn origin_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
}

async fn page(State(pg): State<Pages>, Path(flow): Path<String>) -> Response {
    let shown = pg.links.with_flow(&flow, |f| {
        let p = &f.principal;
        let mut who = format!("<b>{}</b>", escape(&p.subject));
        if let Some(t) = &p.tenant {
            who.push_str(&format!(" of tenant <b>{}</b>", escape(t)));
        }
        format!(
            "<p>This links <b>your</b> account at <b>{up}</b> to Warden user {who}: calls that user makes to \
             {up} will act as your account there.</p>\
             <p>First you sign in as that Warden user at <b>{iss}</b>; then at the sign-in page of <b>{auth}</b>. \
             If someone sent you this link, close this page.</p>\
             <form method=\"post\"><button type=\"submit\">Continue</button></form>",
            up = escape(&f.upstream),
            iss = escape(p.issuer()),
            auth = escape(&origin_of(&f.authorization_url).unwrap_or_default()),
        )
    });
    match shown {
        Some(body) => html(StatusCode::OK, "Link your account", &body, true),
        None => gone(),
    }
}

fn refused(status: StatusCode, why: &str) -> Response {
    tracing::info!(reason = why, "account link refused");
    html(status, "Not linked", &format!("<p>{}</p>", escape(why)), false)
}

fn see_other(to: &str, cookie: Option<&str>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    if let Ok(loc) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, loc);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// Whether a POST comes from a page of Warden's own origin: its `Origin` (browsers send it with
/// every POST), or, without one, `Sec-Fetch-Site: same-origin`. `Origin: null` is refused.
fn from_own_page(links: &Links, headers: &HeaderMap) -> bool {
    let own = links.base().and_then(|b| origin_of(&b));
    match headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or_default()) {
        Some(o) => own.as_deref() == Some(o),
        None => headers.get("sec-fetch-site").is_some_and(|v| v == "same-origin"),
    }
}

async fn confirm(State(pg): State<Pages>, Path(flow): Path<String>, headers: HeaderMap) -> Response {
    let links = &pg.links;
    // Only this page confirms: a form on another site carries its own Origin.
    if !from_own_page(links, &headers) {
        return refused(StatusCode::FORBIDDEN, "Confirm from the link's own page.");
    }
    let Some((principal, unconfirmed)) = links.with_flow(&flow, |f| (f.principal.clone(), f.browser.is_none())) else {
        return gone();
    };
    if !unconfirmed {
        return gone();
    }
    let Some(redirect) = links.base().map(|b| format!("{b}{SIGNED_IN}")) else { return gone() };
    let started = sign_in::start(links, &pg.auth, &principal, &pg.resource, &redirect).await;
    let (to, s) = match started {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in for a link could not start");
            return refused(StatusCode::BAD_GATEWAY, "Warden cannot check who you are at your sign-in service now.");
        }
    };
    let Some(secret) = crate::digest::random_hex(24) else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "Try again.");
    };
    // Once: a flow confirmed is bound to the browser that confirmed it.
    let bound = links.with_flow(&flow, |f| match f.browser {
        Some(_) => false,
        None => {
            f.browser = Some(secret.clone());
            f.sign_in = Some(s);
            true
        }
    });
    if bound != Some(true) {
        return gone();
    }
    see_other(&to, Some(&set_cookie(links, &flow, Some(&secret))))
}

/// Whether the request brings flow `id`'s cookie of the browser that confirmed it (compared as
/// digests: the time taken says nothing about the secret).
fn same_browser(links: &Links, headers: &HeaderMap, id: &str, browser: Option<&str>) -> bool {
    let name = cookie_name(links, id);
    let sent =
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
            |c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then(|| v.to_string())
            },
        );
    let digest = |s: &str| crate::digest::sha256(s.as_bytes());
    browser.map(digest).is_some_and(|b| sent.is_some_and(|c| digest(&c) == b))
}

type Answer = Query<Vec<(String, String)>>;

fn malformed(q: &[(String, String)]) -> bool {
    q.len() > 16 || q.iter().any(|(k, v)| k.len() + v.len() > 4096)
}

fn state_of(q: &[(String, String)]) -> &str {
    q.iter().find(|(k, _)| k == "state").map(|(_, v)| v.as_str()).unwrap_or_default()
}

async fn signed_in(State(pg): State<Pages>, Query(q): Answer, headers: HeaderMap) -> Response {
    let links = &pg.links;
    if malformed(&q) {
        return refused(StatusCode::BAD_REQUEST, "The answer is malformed.");
    }
    let Some((flow, s)) = links.by_sign_in(state_of(&q)) else { return gone() };
    let Some((browser, wanted)) = links.with_flow(&flow, |f| (f.browser.clone(), f.principal.binding_key())) else {
        return gone();
    };
    if !same_browser(links, &headers, &flow, browser.as_deref()) {
        links.drop_flow(&flow);
        return refused(
            StatusCode::BAD_REQUEST,
            "This link was confirmed in another browser. Make the request again from your client.",
        );
    }
    let who = match sign_in::finish(&pg.auth, &s, &q).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in for a link failed");
            links.drop_flow(&flow);
            return refused(
                StatusCode::BAD_REQUEST,
                "The sign-in did not complete. Make the request again from your client.",
            );
        }
    };
    if who.binding_key() != wanted {
        links.drop_flow(&flow);
        tracing::warn!(signed_in = %who.subject, "a link was opened by another user than its own; refused");
        return refused(
            StatusCode::FORBIDDEN,
            &format!("You signed in as {}, but this link is for another user. Nothing was linked.", who.subject),
        );
    }
    match links.with_flow(&flow, |f| {
        f.verified = true;
        f.authorization_url.clone()
    }) {
        Some(to) => see_other(&to, None),
        None => gone(),
    }
}

async fn callback(
    State(pg): State<Pages>,
    Path(upstream): Path<String>,
    Query(q): Answer,
    headers: HeaderMap,
) -> Response {
    let links = &pg.links;
    if malformed(&q) {
        return refused(StatusCode::BAD_REQUEST, "The answer is malformed.");
    }
    // This upstream's flow only: another upstream's authorization server cannot answer for it.
    let Some((id, flow)) = links.take_by_state(&upstream, state_of(&q)) else { return gone() };
    let clear = set_cookie(links, &id, None);
    let refused = |status, why: &str| with_cookie(refused(status, why), &clear);
    if !same_browser(links, &headers, &id, flow.browser.as_deref()) {
        return refused(
            StatusCode::BAD_REQUEST,
            "This link was confirmed in another browser. Make the request again from your client.",
        );
    }
    if !flow.verified {
        return refused(
            StatusCode::FORBIDDEN,
            "Sign in as the link's user first. Make the request again from your client.",
        );
    }
    let code = match crate::upstream::link::code_from(&flow.d, &flow.pending, &q) {
        Ok(c) => c,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &e),
    };
    let who = flow.principal.clone();
    match links.complete(flow, &code).await {
        Ok(()) => {
            let mut e = warden_audit::Event::new("credential", "success");
            crate::audit::Audit::principal(&mut e, &who);
            e.decision = Some("allowed".into());
            e.detail = Some("linked".into());
            e.server = Some(upstream.clone());
            if pg.audit.commit(e).await.is_err() {
                tracing::error!(upstream = %upstream, "an account was linked but its audit record was not stored");
            }
            let page = format!(
                "<p>Your account at <b>{}</b> is linked. Return to your client and retry.</p>",
                escape(&upstream)
            );
            with_cookie(html(StatusCode::OK, "Account linked", &page, false), &clear)
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream, error = %e, "account link failed");
            let why = if e.contains("beyond oauth.scope") {
                "The upstream granted more than Warden allows for it. Nothing was linked."
            } else {
                "The upstream's authorization server did not give a token. Make the request again from your client."
            };
            refused(StatusCode::BAD_GATEWAY, why)
        }
    }
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
