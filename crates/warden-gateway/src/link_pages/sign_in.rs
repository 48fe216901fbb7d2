//! Who opens a link (MCP 2026-07-28, elicitation, "Phishing": the server MUST verify that the
//! user who opens a URL elicitation's page is the user it was made for). Before the browser is
//! sent to the upstream's authorization server, it signs in at the Warden user's own issuer
//! (the built-in server through its first-party client `warden-link`; another issuer through
//! `[[auth.jwt]] sign_in_client_id`, Warden's Client ID Metadata Document on `https`, or a
//! dynamic registration), Warden as the OAuth client
//! (PKCE, `state`, `iss`, the `resource` Warden's own); the token it gets is checked as a
//! request's would be, and the principal it names must be the link's (same method, tenant,
//! issuer and subject).
//!
//! Defends against: a link sent to someone else (they sign in as themselves: refused, the flow
//! dropped); a sign-in answer from another issuer (`iss`), another request (`state`) or
//! intercepted (PKCE).
//! Does not defend against: a user who has the link's user's own credentials at the issuer.

use crate::auth::Authenticator;
use crate::upstream::link::{self, Discovered, Outbound};
use crate::upstream::user::{Links, SignIn};
use std::sync::Arc;
use warden_policy::{AuthMethod, Principal};

/// How the issuer is reached: its own host as configured (an issuer Warden trusts tokens of),
/// any other host its metadata names only at public addresses.
fn outbound(issuer: &str) -> Result<Outbound, String> {
    Outbound::guarded([issuer])
}

/// Start the sign-in of whoever opened a link for `p`: the URL at `p`'s issuer.
pub async fn start(
    links: &Links,
    auth: &Authenticator,
    p: &Principal,
    resource: &str,
    redirect_uri: &str,
) -> Result<(String, SignIn), String> {
    if !matches!(p.method, AuthMethod::Jwt | AuthMethod::Introspection) {
        return Err("this Warden user did not sign in with a token, so cannot be checked in a browser".into());
    }
    let issuer = p.issuer().to_string();
    let (d, id) = match links.sign_in_client(&issuer) {
        Some(known) => known,
        None => {
            let http = outbound(&issuer)?;
            let meta = link::server_metadata(&http, &issuer).await?;
            let d =
                Discovered { resource: resource.to_string(), resource_scopes: vec![], issuer: issuer.clone(), meta };
            let pre = auth.sign_in_client(&issuer, resource)?;
            let cimd = links.cimd_url();
            let id = link::identify(&http, &d, redirect_uri, pre, cimd.as_deref()).await?;
            let d = Arc::new(d);
            links.keep_sign_in_client(&issuer, d.clone(), id.clone());
            (d, id)
        }
    };
    let scope = auth.required_scopes().join(" ");
    let scope = (!scope.is_empty()).then_some(scope.as_str());
    let (url, pending) = link::authorization_url(&d, &id, redirect_uri, scope)?;
    Ok((url, SignIn { d, id, pending }))
}

/// Finish the sign-in: who it says opened the link.
pub async fn finish(auth: &Authenticator, s: &SignIn, answer: &[(String, String)]) -> Result<Arc<Principal>, String> {
    let code = link::code_from(&s.d, &s.pending, answer)?;
    let t = link::token(
        &outbound(&s.d.issuer)?,
        &s.d,
        &s.id,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.pending.redirect_uri),
            ("code_verifier", &s.pending.verifier),
        ],
    )
    .await?;
    auth.verify_bearer(&t.access_token, &s.d.resource)
        .await
        .map_err(|e| format!("the sign-in's token is not accepted here: {e:?}"))
}
