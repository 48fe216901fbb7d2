//! The built-in authorization server's token endpoint: the authorization code (with PKCE, the
//! resource and the redirect URI it was issued for) and refresh-token grants, with rotation and
//! reuse detection; the client authenticated by its secret when it has one.

use super::as_http::{json_response, oauth_error, random_token};
use super::as_state::{refresh_key, Client, Refresh, Store};
use super::builtin::{pkce_ok, server, AuthServer, CODE_TTL, S};
use super::cimd;
use super::{hex, now_secs, sha256};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::Form;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

#[derive(Deserialize)]
pub(super) struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

/// The authenticated client of a token request.
/// Clients named by a metadata document URL are public: they present no secret.
fn client_auth(st: &Store, url_clients: bool, h: &HeaderMap, f: &TokenForm) -> Option<String> {
    let basic = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(i, p)| (decode_form(i), decode_form(p))));
    let (id, secret) = match (&basic, &f.client_id) {
        (Some((i, p)), _) => (i.clone(), Some(p.clone())),
        (None, Some(i)) => (i.clone(), f.client_secret.clone()),
        (None, None) => return None,
    };
    let ok = match st.clients.get(&id) {
        Some(Client { secret: None, .. }) => secret.is_none(),
        Some(Client { secret: Some(want), .. }) => {
            secret.is_some_and(|s| bool::from(hex(&sha256(s.as_bytes())).as_bytes().ct_eq(want.as_bytes())))
        }
        None => url_clients && cimd::is_url(&id) && secret.is_none(),
    };
    ok.then_some(id)
}

fn decode_form(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

pub(super) async fn token(State(a): State<S>, h: HeaderMap, Form(f): Form<TokenForm>) -> Response<Body> {
    let s = server(&a);
    let (answer, changed) = grant(s, &h, &f);
    // Saved before the answer: a rotated or revoked refresh token stays so after a restart. Not
    // saved: no new token is handed out (503).
    if changed && !s.persist().await && answer.status().is_success() {
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the grant could not be saved");
    }
    answer
}

/// The token endpoint's decision; true when the persistent state changed (a grant, or a
/// revocation).
fn grant(s: &AuthServer, h: &HeaderMap, f: &TokenForm) -> (Response<Body>, bool) {
    let ttl = s.cfg.access_token_ttl_secs;
    let mut st = s.store.lock();
    let Some(client_id) = client_auth(&st, s.documents.is_some(), h, f) else {
        return (oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed"), false);
    };
    let granted = match f.grant_type.as_str() {
        "authorization_code" => {
            let key = sha256(f.code.as_deref().unwrap_or("").as_bytes());
            let Some(c) = st.codes.get_mut(&key) else {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or expired code"), false);
            };
            if c.used {
                tracing::warn!(client = %client_id, "authorization code replayed: revoking its tokens");
                let family = c.family.clone();
                return (s.revoke_family(st, family, "code already used"), true);
            }
            c.used = true;
            if c.created.elapsed() > CODE_TTL || c.client_id != client_id {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or expired code"), false);
            }
            if f.redirect_uri.as_deref() != Some(c.redirect_uri.as_str()) {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri does not match"), false);
            }
            if !pkce_ok(f.code_verifier.as_deref().unwrap_or(""), &c.challenge) {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed"), false);
            }
            if f.resource.as_deref().is_some_and(|r| r != c.resource) {
                return (
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "resource does not match the grant"),
                    false,
                );
            }
            (c.subject.clone(), c.scopes.clone(), c.resource.clone(), c.family.clone())
        }
        "refresh_token" => {
            let key = refresh_key(f.refresh_token.as_deref().unwrap_or(""));
            let Some(r) = st.refresh.get_mut(&key) else {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown refresh token"), false);
            };
            if r.client_id != client_id {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown refresh token"), false);
            }
            if r.used {
                tracing::warn!(client = %client_id, "refresh token reused: revoking its family");
                let family = r.family.clone();
                return (s.revoke_family(st, family, "refresh token already used"), true);
            }
            r.used = true;
            if r.expires <= now_secs() {
                return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token expired"), false);
            }
            let scopes = match f.scope.as_deref() {
                Some(sc) => {
                    let want: Vec<String> = sc.split_whitespace().map(String::from).collect();
                    if want.iter().any(|w| !r.scopes.contains(w)) {
                        return (
                            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope exceeds the grant"),
                            false,
                        );
                    }
                    want
                }
                None => r.scopes.clone(),
            };
            if f.resource.as_deref().is_some_and(|x| x != r.resource) {
                return (
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "resource does not match the grant"),
                    false,
                );
            }
            (r.subject.clone(), scopes, r.resource.clone(), r.family.clone())
        }
        _ => return (oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type"), false),
    };
    let (subject, scopes, resource, family) = granted;
    if st.revoked_families.contains(&family) {
        return (oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "grant revoked"), false);
    }
    let refresh = random_token();
    st.refresh.retain(|_, r| r.expires > now_secs());
    st.refresh.insert(
        refresh_key(&refresh),
        Refresh {
            client_id: client_id.clone(),
            subject: subject.clone(),
            scopes: scopes.clone(),
            resource: resource.clone(),
            expires: now_secs() + s.cfg.refresh_token_ttl_secs,
            family,
            used: false,
        },
    );
    st.codes.retain(|_, c| c.created.elapsed() < CODE_TTL * 10);
    if let Some(c) = st.clients.get_mut(&client_id) {
        c.last_used = Some(now_secs());
    }
    drop(st);
    let access = s.mint(&subject, &scopes, &client_id, &resource, ttl);
    let answer = json_response(
        StatusCode::OK,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": scopes.join(" "),
        }),
    );
    (answer, true)
}
