//! Whose credential one HTTP upstream connection presents (`[upstream.oauth] mode`): none,
//! Warden's own (client credentials, `oauth.rs`), each caller's token exchanged (`oauth.rs`),
//! or each user's linked account (`user/`). A connection that acts for a caller serves that
//! caller only (`relay/upstreams.rs`).
//!
//! Defends against: a request going up with another caller's credential (the exchanged token is
//! the request's own caller's, `ON_BEHALF`; a linked account is the connection's owner's);
//! credentials in the audit record (it names which one, a digest, never its value).

use super::oauth::{ClientCredentials, Exchanger, Offered, ON_BEHALF};
use super::user::{NoToken, UserLink};
use http::HeaderValue;
use parking_lot::Mutex;
use std::sync::Arc;
use warden_policy::Principal;

pub enum Credential {
    None,
    /// Warden's own token, shared by every connection.
    Service(Arc<ClientCredentials>),
    /// The caller's token exchanged; `offered`: the latest token its caller offered (traffic
    /// Warden starts itself: streams, close). Warden's own connection is `Service`.
    Exchange {
        x: Arc<Exchanger>,
        offered: Mutex<Option<Offered>>,
    },
    /// The owner's linked account; `last`: the digest of the token last presented.
    User {
        link: Arc<UserLink>,
        owner: Box<Principal>,
        last: Mutex<Option<String>>,
    },
}

impl Credential {
    /// For a connection to `spec`, on behalf of `owner` (a session's caller) or Warden's own.
    pub fn new(spec: &super::Spec, owner: Option<&Principal>) -> Credential {
        match (owner, &spec.exchange, &spec.user, &spec.oauth) {
            (Some(p), Some(x), _, _) => {
                Credential::Exchange { x: x.clone(), offered: Mutex::new(Some(super::oauth::presented(p))) }
            }
            (Some(p), _, Some(link), _) => {
                Credential::User { link: link.clone(), owner: Box::new(p.clone()), last: Mutex::new(None) }
            }
            (_, _, _, Some(o)) => Credential::Service(o.clone()),
            _ => Credential::None,
        }
    }

    /// The latest request's caller (same caller, maybe a fresher token).
    pub fn offer(&self, p: &Principal) {
        if let Credential::Exchange { offered, .. } = self {
            *offered.lock() = Some(super::oauth::presented(p));
        }
    }

    /// The token to exchange: the request's own (`ON_BEHALF`), else the latest offered.
    fn subject(offered: &Mutex<Option<Offered>>) -> Result<Offered, String> {
        let o = ON_BEHALF.try_with(Clone::clone).ok().or_else(|| offered.lock().clone());
        o.filter(|(t, _)| t.get().is_some()).ok_or_else(|| {
            "this upstream takes each caller's own identity (oauth mode = \"exchange\"), and this caller \
             presented no token to exchange"
                .to_string()
        })
    }

    /// The `Authorization` value, if any.
    pub async fn header(&self, http: &reqwest::Client) -> Result<Option<HeaderValue>, String> {
        match self {
            Credential::None => Ok(None),
            Credential::Service(o) => o.header(http).await.map(Some),
            Credential::Exchange { x, offered } => {
                let (token, expires) = Self::subject(offered)?;
                x.header(http, token.get().unwrap_or_default(), expires).await.map(Some)
            }
            Credential::User { link, owner, last } => match link.header(owner).await {
                Ok(v) => {
                    let token = v.to_str().unwrap_or_default().trim_start_matches("Bearer ");
                    *last.lock() = Some(super::user::token_digest(token));
                    Ok(Some(v))
                }
                Err(NoToken::NotLinked) => Err("this user's account at the upstream is not linked".into()),
                Err(NoToken::Failed(e)) => Err(e),
            },
        }
    }

    /// The upstream answered 401: forget (or refresh) what was presented.
    pub async fn refused(&self) {
        match self {
            Credential::None => {}
            Credential::Service(o) => o.invalidate(),
            Credential::Exchange { x, offered } => {
                if let Ok((token, _)) = Self::subject(offered) {
                    x.invalidate(token.get().unwrap_or_default());
                }
            }
            Credential::User { link, owner, last } => {
                let seen = last.lock().clone();
                if let Some(seen) = seen {
                    link.refused(owner, seen).await;
                }
            }
        }
    }

    /// The upstream answered 403 `insufficient_scope` naming `scope`: for a linked account,
    /// the user's next request asks them to link again with it (step-up).
    pub fn insufficient(&self, scope: &str) {
        if let Credential::User { link, owner, .. } = self {
            link.step_up(owner, scope);
        }
    }

    /// Which credential this connection presents (for the audit record; never its value).
    pub fn label(&self) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Service(_) => Some("service".into()),
            Credential::Exchange { x, offered } => Some(match Self::subject(offered) {
                Ok((token, _)) => match x.digest(token.get().unwrap_or_default()) {
                    Some(d) => format!("exchange:{d}"),
                    None => "exchange".into(),
                },
                Err(_) => "exchange".into(),
            }),
            Credential::User { last, .. } => Some(match &*last.lock() {
                Some(d) => format!("user:{}", &d[..12]),
                None => "user".into(),
            }),
        }
    }
}
