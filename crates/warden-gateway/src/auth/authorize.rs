//! The built-in authorization server's `/authorize`: the consent page and its form (login,
//! approve or deny), and the redirect back to the client with a code or an error.
//!
//! Defends against: open redirects (errors before the redirect URI is validated are shown, never
//! redirected; afterwards they go back only to a loopback redirect URI), login CSRF and
//! clickjacking (a per-request token bound to a `SameSite=Strict` cookie; `X-Frame-Options: DENY`
//! and `frame-ancestors 'none'`), password guessing (argon2id at most [`HASHING_AT_ONCE`] at a
//! time, and a lockout per user name kept in the state — shared by replicas with a shared
//! store), a flood of requests in progress (bounded per source and in total, see
//! [`super::as_store`]). See [`super::builtin`] for the whole server.

use super::as_http::{no_store, random_token};
use super::as_state::{Code, Pending};
use super::builtin::{issuer_of, server, UsersFile, MAX_USER_NAME, S};
use super::cimd;
use super::sha256;
use crate::caller::ClientAddr;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use axum::{Extension, Form};
use serde::Deserialize;
use subtle::ConstantTimeEq;

const MAX_PASSWORD: usize = 1024;
/// Password hashes computed at once (each takes a core for tens of milliseconds).
const HASHING_AT_ONCE: usize = 2;

/// Check a password against a user's argon2id hash (or, for an unknown user, spend the same
/// cost on a dummy hash), on the blocking pool and at most [`HASHING_AT_ONCE`] at a time, so
/// that a burst of logins neither stalls the async workers serving MCP traffic nor the host.
async fn verify_password(hash: Option<String>, password: String) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);
    // A bounded wait: past this many logins waiting for a hash, a login fails at once.
    static WAITING: AtomicUsize = AtomicUsize::new(0);
    if WAITING.fetch_add(1, Ordering::AcqRel) >= 32 {
        WAITING.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!("built-in authorization server: too many logins at once; one refused");
        return false;
    }
    let slot = SLOTS.acquire().await;
    WAITING.fetch_sub(1, Ordering::AcqRel);
    let Ok(_slot) = slot else { return false };
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => PasswordHash::new(&h)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false),
        None => {
            // Same cost for unknown users.
            let _ = UsersFile::default().set("x", &password, vec![]);
            false
        }
    })
    .await
    .unwrap_or(false)
}

use crate::html::escape as html_escape;

/// The consent form posts here and is answered with a redirect to the client: browsers apply
/// `form-action` to that redirect too, so the policy names the redirect URI's origin (or, for an
/// app's own scheme, the scheme) besides `'self'`.
fn form_action(redirect_uri: Option<&str>) -> String {
    // CSP sources name hosts of letters, digits, hyphens and dots (or IPv4 addresses); an
    // IPv6 literal has no CSP form, so such a client's redirect stays blocked by the browser.
    let to = redirect_uri.and_then(|r| reqwest::Url::parse(r).ok()).and_then(|u| match (u.scheme(), u.host()) {
        ("http" | "https", Some(url::Host::Domain(d)))
            if d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            Some(u.origin().ascii_serialization())
        }
        ("http" | "https", Some(url::Host::Ipv4(_))) => Some(u.origin().ascii_serialization()),
        ("http" | "https", _) => None,
        (scheme, _) => Some(format!("{scheme}:")),
    });
    // A parsed origin or scheme holds no space, comma or semicolon to end the directive early.
    match to.filter(|t| !t.contains([' ', ';', ','])) {
        Some(t) => format!("form-action 'self' {t}"),
        None => "form-action 'self'".into(),
    }
}

fn page(status: StatusCode, body: String, cookie: Option<String>) -> Response<Body> {
    consent_page(status, body, cookie, None)
}

fn consent_page(
    status: StatusCode,
    body: String,
    cookie: Option<String>,
    redirect_uri: Option<&str>,
) -> Response<Body> {
    let csp =
        format!("default-src 'none'; style-src 'unsafe-inline'; {}; frame-ancestors 'none'", form_action(redirect_uri));
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("x-frame-options", "DENY")
        .header("content-security-policy", csp)
        .header("referrer-policy", "no-referrer")
        .header("x-content-type-options", "nosniff");
    if let Some(c) = cookie {
        b = b.header(header::SET_COOKIE, c);
    }
    no_store(b.body(Body::from(body)).expect("static response parts"))
}

/// 429 with `Retry-After`: too many authorization requests in progress.
fn busy_page() -> Response<Body> {
    let mut r = page(
        StatusCode::TOO_MANY_REQUESTS,
        "<!doctype html><title>Try again later</title><h1>Too many authorization requests in progress</h1><p>Try again in a few minutes.</p>".into(),
        None,
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

/// 503: the state (a shared store) cannot be reached.
fn unavailable_page() -> Response<Body> {
    let mut r = error_page("the authorization server cannot reach its state; try again shortly");
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

fn error_page(msg: &str) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        format!(
            "<!doctype html><title>Authorization error</title><h1>Authorization error</h1><p>{}</p>",
            html_escape(msg)
        ),
        None,
    )
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> Response<Body> {
    let mut u = match reqwest::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return error_page("invalid redirect URI"),
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    no_store(
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, u.as_str())
            .body(Body::empty())
            .expect("static response parts"),
    )
}

/// An `http` redirect URI to a loopback address (a native app's local listener).
fn loopback_uri(u: &str) -> bool {
    let Ok(p) = reqwest::Url::parse(u) else { return false };
    p.scheme() == "http"
        && match p.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

#[derive(Deserialize)]
pub(super) struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
}

pub(super) async fn authorize_get(
    State(a): State<S>,
    addr: Option<Extension<ClientAddr>>,
    h: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
) -> Response<Body> {
    let s = server(&a);
    let source = addr.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(ClientAddr(ip))| ip);
    let (issuer, resource) = issuer_of(&a, &h);
    let Some(client_id) = q.client_id.as_deref() else { return error_page("missing client_id") };
    let c = match s.client(client_id).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error_page(&e),
        Err(_) => return unavailable_page(),
    };
    let redirect_uri = match q.redirect_uri.as_deref() {
        Some(r) if c.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        None if c.redirect_uris.len() == 1 => c.redirect_uris[0].clone(),
        _ => return error_page("the redirect URI does not match one registered for this client"),
    };
    let client_name = c.name;
    // Self-registered (not a metadata document URL): its name is only its own claim.
    let self_registered = !cimd::is_url(client_id) && !s.is_console(client_id);
    // From here errors go back to the validated redirect URI — when that cannot make Warden a
    // redirector for whoever registered the client (RFC 9700 §4.11.2): only to loopback.
    let state = q.state.clone();
    let to_client = loopback_uri(&redirect_uri);
    let fail = |error: &str, desc: &str| {
        if !to_client {
            return error_page(&format!("{error}: {desc}"));
        }
        let mut p = vec![("error", error), ("error_description", desc), ("iss", issuer.as_str())];
        if let Some(st) = &state {
            p.push(("state", st));
        }
        redirect(&redirect_uri, &p)
    };
    if q.response_type.as_deref() != Some("code") {
        return fail("unsupported_response_type", "only response_type=code");
    }
    let challenge = match (q.code_challenge.as_deref(), q.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if c.len() == 43 => c.to_string(),
        (Some(_), Some("S256")) => return fail("invalid_request", "malformed code_challenge"),
        (Some(_), _) => return fail("invalid_request", "code_challenge_method must be S256"),
        (None, _) => return fail("invalid_request", "PKCE (S256) is required"),
    };
    if let Some(r) = q.resource.as_deref() {
        if r != resource {
            return fail("invalid_target", "this server issues tokens only for its own resource");
        }
    }
    let scopes: Vec<String> = match q.scope.as_deref() {
        Some(sc) if !sc.trim().is_empty() => sc.split_whitespace().map(String::from).collect(),
        // Warden's own operator scopes are granted only when asked for by name.
        _ => s.cfg.scopes.iter().filter(|x| !crate::auth::operator_scope(x)).cloned().collect(),
    };
    // Anyone can register a client and name it anything: Warden's operator scopes go to its
    // own console only.
    if scopes.iter().any(|x| crate::auth::operator_scope(x)) && !s.is_console(client_id) {
        return fail("invalid_scope", "Warden's operator scopes are granted to its console only");
    }
    if let Some(bad) = scopes.iter().find(|x| !s.cfg.scopes.contains(x)) {
        tracing::info!(scope = %bad, "authorization request for an unknown scope");
        return fail("invalid_scope", "a requested scope is not offered");
    }
    let request_id = random_token();
    let csrf = random_token();
    let pending = Pending {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.clone(),
        scopes: scopes.clone(),
        state: q.state.clone(),
        challenge,
        resource: resource.clone(),
        csrf: csrf.clone(),
        created: crate::clock::now_ms(),
        source,
    };
    match s.state.start_pending(&request_id, pending).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(client = ?client_id, %source, "built-in authorization server: too many authorization requests in progress");
            return busy_page();
        }
        Err(_) => return unavailable_page(),
    }
    let e = html_escape;
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Authorize {client}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}code{{word-break:break-all}}</style></head>
<body><h1>Authorize access</h1>
<p>The application <strong>{client}</strong>{unverified} asks to use <code>{resource}</code> as you, with these scopes:</p>
<ul>{scopes}</ul>
<p>After you decide, you will be sent to <code>{redirect}</code>.</p>
<form method="post" action="/authorize">
<input type="hidden" name="request_id" value="{rid}"><input type="hidden" name="csrf" value="{csrf}">
<p><label>User <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button name="decision" value="approve">Approve</button> <button name="decision" value="deny">Deny</button></p>
</form></body></html>"#,
        client = e(&client_name),
        unverified = if self_registered {
            " <em>(unverified: the application registered itself and chose this name)</em>"
        } else {
            ""
        },
        resource = e(&resource),
        scopes = scopes.iter().map(|x| format!("<li><code>{}</code></li>", e(x))).collect::<String>(),
        redirect = e(&redirect_uri),
        rid = e(&request_id),
        csrf = e(&csrf),
    );
    let secure = if a.resource_for(&h, None).starts_with("https:") { "; Secure" } else { "" };
    let cookie = format!("warden_csrf={csrf}; Path=/authorize; HttpOnly; SameSite=Strict; Max-Age=600{secure}");
    consent_page(StatusCode::OK, body, Some(cookie), Some(&redirect_uri))
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    request_id: String,
    csrf: String,
    username: Option<String>,
    password: Option<String>,
    decision: String,
}

fn cookie_value<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) async fn authorize_post(State(a): State<S>, h: HeaderMap, Form(f): Form<ConsentForm>) -> Response<Body> {
    let s = server(&a);
    let (issuer, _) = issuer_of(&a, &h);
    let cookie = cookie_value(&h, "warden_csrf").unwrap_or("");
    let from_its_page = |p: &Pending| {
        bool::from(p.csrf.as_bytes().ct_eq(f.csrf.as_bytes())) && bool::from(p.csrf.as_bytes().ct_eq(cookie.as_bytes()))
    };
    let p = match s.state.take_pending(&f.request_id, from_its_page).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_page("this authorization request is unknown, expired or was not submitted from its own page")
        }
        Err(_) => return unavailable_page(),
    };
    let mut base = vec![("iss", issuer.as_str())];
    if let Some(st) = &p.state {
        base.push(("state", st));
    }
    if f.decision != "approve" {
        base.extend([("error", "access_denied"), ("error_description", "the user denied access")]);
        return redirect(&p.redirect_uri, &base);
    }
    let name = f.username.unwrap_or_default();
    let max = s.cfg.max_failed_logins;
    // No user name is longer (`warden user add` refuses them): not even worth a hash, nor a
    // place in the failed-login map.
    if name.len() > MAX_USER_NAME || f.password.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD) {
        tracing::info!("built-in authorization server: login refused (over-long name or password)");
        base.extend([("error", "access_denied"), ("error_description", "login failed")]);
        return redirect(&p.redirect_uri, &base);
    }
    // Counted before the password is checked, so that attempts in flight (on every replica)
    // count; past `max` none is checked until the window ends, and the answer is the same.
    let attempts = match s.state.attempt_login(&name).await {
        Ok(n) => n,
        Err(_) => return unavailable_page(),
    };
    let locked = attempts > max;
    if attempts == max + 1 {
        tracing::warn!(user = %name, "built-in authorization server: too many failed logins, name locked for 15 min");
    }
    let user = s.users.get(&name);
    let password = f.password.unwrap_or_default();
    let verified = !locked && verify_password(user.map(|u| u.password_hash.clone()), password).await;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(locked, "built-in authorization server: login failed");
        base.extend([("error", "access_denied"), ("error_description", "login failed")]);
        return redirect(&p.redirect_uri, &base);
    };
    // A user without a scope list may grant every scope but the operator scopes, which a user
    // must be given by name (`warden user add NAME --scopes mcp,warden:admin`).
    let may = |x: &String| user.scopes.contains(x) || (user.scopes.is_empty() && !crate::auth::operator_scope(x));
    if !p.scopes.iter().all(may) {
        base.extend([("error", "invalid_scope"), ("error_description", "the user may not grant a requested scope")]);
        return redirect(&p.redirect_uri, &base);
    }
    let code = random_token();
    let issued = Code {
        client_id: p.client_id,
        redirect_uri: p.redirect_uri.clone(),
        scopes: p.scopes,
        challenge: p.challenge,
        resource: p.resource,
        subject: user.name.clone(),
        created: crate::clock::now_ms(),
        used: false,
        family: random_token(),
    };
    let saved = s.state.login_succeeded(&name).await.and(s.state.put_code(&sha256(code.as_bytes()), issued).await);
    if saved.is_err() {
        base.extend([
            ("error", "temporarily_unavailable"),
            ("error_description", "the authorization could not be saved"),
        ]);
        return redirect(&p.redirect_uri, &base);
    }
    tracing::info!(user = %user.name, "authorization granted");
    base.push(("code", &code));
    redirect(&p.redirect_uri, &base)
}

#[cfg(test)]
mod tests {
    use super::form_action;

    /// Chromium refused the redirect back to the client after the consent form (found by the
    /// console's browser test): `form-action 'self'` alone blocks it.
    #[test]
    fn the_consent_forms_policy_lets_it_redirect_to_its_client_only() {
        assert_eq!(form_action(Some("http://127.0.0.1:9/cb?x=1")), "form-action 'self' http://127.0.0.1:9");
        assert_eq!(form_action(Some("https://app.example/cb")), "form-action 'self' https://app.example");
        assert_eq!(form_action(Some("com.example.app:/cb")), "form-action 'self' com.example.app:");
        assert_eq!(form_action(None), "form-action 'self'");
        assert_eq!(form_action(Some("not a url; script-src *")), "form-action 'self'");
        // Found by review: a wildcard host would let the form go anywhere.
        assert_eq!(form_action(Some("https://*/cb")), "form-action 'self'");
        assert_eq!(form_action(Some("https://%2A/cb")), "form-action 'self'");
        assert_eq!(form_action(Some("http://[::1]:9/cb")), "form-action 'self'");
    }
}
