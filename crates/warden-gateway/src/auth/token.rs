//! The built-in authorization server's token endpoint: the authorization code (with PKCE, the
//! resource and the redirect URI it was issued for) and refresh-token grants, with rotation and
//! reuse detection; the client authenticated by its secret when it has one.

use super::as_http::{json_response, oauth_error, random_token};
use super::as_state::{refresh_key, Client, Refresh};
use super::as_store::{Redeemed, Rotated, Unavailable};
use super::builtin::{pkce_ok, server, AuthServer, S};
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

/// The client credentials of a token request: HTTP Basic, else the form's.
fn credentials(h: &HeaderMap, f: &TokenForm) -> Option<(String, Option<String>)> {
    let basic = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(i, p)| (decode_form(i), decode_form(p))));
    match (basic, &f.client_id) {
        (Some((i, p)), _) => Some((i, Some(p))),
        (None, Some(i)) => Some((i.clone(), f.client_secret.clone())),
        (None, None) => None,
    }
}

/// The authenticated client of a token request.
/// Clients named by a metadata document URL are public: they present no secret.
async fn client_auth(s: &AuthServer, h: &HeaderMap, f: &TokenForm) -> Result<Option<String>, Unavailable> {
    let Some((id, secret)) = credentials(h, f) else { return Ok(None) };
    if s.is_console(&id) {
        return Ok(secret.is_none().then_some(id));
    }
    let ok = match s.state.client(&id).await? {
        Some(Client { secret: None, .. }) => secret.is_none(),
        Some(Client { secret: Some(want), .. }) => {
            secret.is_some_and(|s| bool::from(hex(&sha256(s.as_bytes())).as_bytes().ct_eq(want.as_bytes())))
        }
        None => s.documents.is_some() && cimd::is_url(&id) && secret.is_none(),
    };
    Ok(ok.then_some(id))
}

fn decode_form(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

pub(super) async fn token(State(a): State<S>, h: HeaderMap, Form(f): Form<TokenForm>) -> Response<Body> {
    // Not saved (the state file, or the shared store): no new token is handed out (503).
    grant(server(&a), &h, &f).await.unwrap_or_else(|_| {
        oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the grant could not be saved")
    })
}

fn invalid_grant(why: &str) -> Response<Body> {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

fn invalid_target() -> Response<Body> {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "resource does not match the grant")
}

/// A reused code or refresh token (which lived until `expires`): its whole family is revoked.
async fn reused(
    s: &AuthServer,
    client: &str,
    family: &str,
    expires: u64,
    why: &str,
) -> Result<Response<Body>, Unavailable> {
    tracing::warn!(client = %client, "{why}: revoking its grant family");
    s.state.revoke_family(family, expires).await?;
    Ok(invalid_grant(why))
}

/// The token endpoint's decision.
async fn grant(s: &AuthServer, h: &HeaderMap, f: &TokenForm) -> Result<Response<Body>, Unavailable> {
    let ttl = s.cfg.access_token_ttl_secs;
    let Some(client_id) = client_auth(s, h, f).await? else {
        return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed"));
    };
    let granted = match f.grant_type.as_str() {
        "authorization_code" => {
            let key = sha256(f.code.as_deref().unwrap_or("").as_bytes());
            let c = match s.state.use_code(&key).await? {
                Redeemed::First(c) if c.client_id == client_id => c,
                Redeemed::Again(family) => {
                    let lives = now_secs() + s.cfg.refresh_token_ttl_secs;
                    return reused(s, &client_id, &family, lives, "code already used").await;
                }
                _ => return Ok(invalid_grant("unknown or expired code")),
            };
            if f.redirect_uri.as_deref() != Some(c.redirect_uri.as_str()) {
                return Ok(invalid_grant("redirect_uri does not match"));
            }
            if !pkce_ok(f.code_verifier.as_deref().unwrap_or(""), &c.challenge) {
                return Ok(invalid_grant("PKCE verification failed"));
            }
            if f.resource.as_deref().is_some_and(|r| r != c.resource) {
                return Ok(invalid_target());
            }
            (c.subject, c.scopes, c.resource, c.family, None)
        }
        "refresh_token" => {
            let key = refresh_key(f.refresh_token.as_deref().unwrap_or(""));
            // Looked at here; redeemed below, in one step with issuing its successor.
            let r = match s.state.refresh(&key, &client_id).await? {
                Redeemed::First(r) => r,
                Redeemed::Expired => return Ok(invalid_grant("refresh token expired")),
                Redeemed::Unknown | Redeemed::Again(_) => return Ok(invalid_grant("unknown refresh token")),
            };
            let scopes = match f.scope.as_deref() {
                Some(sc) => {
                    let want: Vec<String> = sc.split_whitespace().map(String::from).collect();
                    if want.iter().any(|w| !r.scopes.contains(w)) {
                        return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope exceeds the grant"));
                    }
                    want
                }
                None => r.scopes,
            };
            if f.resource.as_deref().is_some_and(|x| x != r.resource) {
                return Ok(invalid_target());
            }
            (r.subject, scopes, r.resource, r.family, Some((key, r.expires)))
        }
        _ => return Ok(oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type")),
    };
    let (subject, scopes, resource, family, presented) = granted;
    let refresh = random_token();
    let kept = Refresh {
        client_id: client_id.clone(),
        subject: subject.clone(),
        scopes: scopes.clone(),
        resource: resource.clone(),
        expires: now_secs() + s.cfg.refresh_token_ttl_secs,
        family: family.clone(),
        used: false,
    };
    match s.state.rotate(presented.as_ref().map(|(k, _)| k.as_str()), &refresh_key(&refresh), kept).await? {
        Rotated::Issued => {}
        Rotated::Revoked => return Ok(invalid_grant("grant revoked")),
        Rotated::Reused => {
            let expires = presented.map_or(0, |(_, e)| e);
            return reused(s, &client_id, &family, expires, "refresh token already used").await;
        }
    }
    let access = s.mint(&subject, &scopes, &client_id, &resource, ttl);
    Ok(json_response(
        StatusCode::OK,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": scopes.join(" "),
        }),
    ))
}
