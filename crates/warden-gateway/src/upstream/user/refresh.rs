//! Keeping a linked account's token fresh: refreshed at half its life or 30 s before it ends
//! (whichever is sooner), or when the upstream refused it; one refresh at a time per upstream
//! and user, run in its own task (a request cancelled meanwhile does not lose a rotated refresh
//! token between the server's answer and the vault); a grant the server refuses
//! (`invalid_grant`) forgets the link, unless another refresh replaced it meanwhile.
//!
//! Defends against: concurrent requests each spending the one-time refresh token of a server
//! that rotates them (the loser's `invalid_grant` would otherwise forget the winner's link);
//! a rotated `oauth.client_secret` unlinking every user (the configured secret is used, and
//! `invalid_client` is a failure, not a withdrawn grant).
//! Does not defend against: two replicas refreshing one user's token at the same moment (each
//! has its own gate; with a server that rotates refresh tokens the second one fails and, if the
//! first one's token has not reached the vault yet, the link is forgotten).

use super::links::{secret_from, Links};
use super::NoToken;
use crate::upstream::link::{self, ClientAuth, Discovered, Identity, Outbound};
use crate::vault::Secret;
use std::sync::Arc;
use warden_policy::Principal;

/// A token this close to its expiry is refreshed first (or at half its life, if shorter).
const EARLY: u64 = 30;

/// Whether `s` should be refreshed before use at `now`.
pub(super) fn expiring(s: &Secret, now: u64) -> bool {
    let Some(exp) = s.expires_at else { return false };
    let life = s.client.as_ref().map_or(u64::MAX, |c| exp.saturating_sub(c.obtained_at));
    exp <= now + EARLY.min(life / 2)
}

/// How a token is named without being kept: its SHA-256, hex.
pub fn digest(token: &str) -> String {
    crate::digest::hex(&crate::digest::sha256(token.as_bytes()))
}

/// What a refresh needs.
pub(super) struct Refresh {
    pub links: Arc<Links>,
    pub http: Outbound,
    pub upstream: String,
    pub owner: Principal,
    /// The digest ([`digest`]) of the access token the caller saw expire or be refused: if the
    /// vault holds another one, someone refreshed meanwhile and that one is used.
    pub seen: String,
    /// The pre-registered client (`oauth.client_id`, `client_secret`), as configured now.
    pub preregistered: Option<(String, Option<String>)>,
}

impl Refresh {
    /// Refresh, one at a time per upstream and user, in a task of its own.
    pub async fn run(self) -> Result<Secret, NoToken> {
        let key = format!("refresh\0{}\0{}", self.upstream, self.owner.binding_key());
        let links = self.links.clone();
        let gate = links.gate(&key);
        let held = gate.clone();
        let task = tokio::spawn(async move {
            let _one = held.lock().await;
            self.now().await
        });
        let r = task.await.unwrap_or_else(|_| Err(NoToken::Failed("the refresh task failed".into())));
        links.release(&key, gate);
        r
    }

    async fn get(&self) -> Result<Option<Secret>, NoToken> {
        let (up, p) = (self.upstream.clone(), self.owner.clone());
        self.links.blocking(move |v| v.get(&up, &p)).await.map_err(|e| NoToken::Failed(e.to_string()))
    }

    async fn now(self) -> Result<Secret, NoToken> {
        let current = self.get().await?.ok_or(NoToken::NotLinked)?;
        if digest(&current.access_token) != self.seen {
            return Ok(current);
        }
        let (Some(rt), Some(c)) = (current.refresh_token.clone(), current.client.clone()) else {
            self.forget_if(None).await;
            return Err(NoToken::NotLinked);
        };
        let d = Discovered {
            resource: c.resource.clone(),
            resource_scopes: vec![],
            issuer: c.issuer.clone(),
            meta: serde_json::json!({"token_endpoint": c.token_endpoint}),
        };
        // The configured secret of a pre-registered client (it may have been rotated since).
        let secret = match &self.preregistered {
            Some((id, secret)) if *id == c.client_id => secret.clone(),
            _ => c.client_secret.clone(),
        };
        let auth = match (c.auth_method.as_str(), secret) {
            ("client_secret_post", Some(s)) => ClientAuth::Post(s),
            ("client_secret_basic", Some(s)) => ClientAuth::Basic(s),
            _ => ClientAuth::None,
        };
        let id = Identity { client_id: c.client_id.clone(), auth };
        let grant = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
        match link::token(&self.http, &d, &id, &grant).await {
            Ok(mut t) => {
                // A server that does not rotate refresh tokens keeps the old one good.
                t.refresh_token = t.refresh_token.or(Some(rt));
                let s = secret_from(t, c);
                let (up, p, kept) = (self.upstream.clone(), self.owner.clone(), s.clone());
                self.links
                    .blocking(move |v| v.put(&up, &p, &kept))
                    .await
                    .map_err(|e| NoToken::Failed(e.to_string()))?;
                tracing::info!(upstream = %self.upstream, subject = %self.owner.subject, "linked token refreshed");
                Ok(s)
            }
            Err(e) if e.grant_refused() => {
                tracing::info!(upstream = %self.upstream, subject = %self.owner.subject, error = %e, "link refused by its server");
                self.forget_if(Some(&rt)).await;
                // Replaced meanwhile (another replica's refresh, a new link): that one.
                match self.get().await? {
                    Some(s) if s.refresh_token.as_deref() != Some(rt.as_str()) => Ok(s),
                    _ => Err(NoToken::NotLinked),
                }
            }
            Err(e) => Err(NoToken::Failed(e.to_string())),
        }
    }

    /// Forget the link if it still holds the refresh token `rt` (none: whatever it holds).
    async fn forget_if(&self, rt: Option<&str>) {
        let (up, p, rt) = (self.upstream.clone(), self.owner.clone(), rt.map(String::from));
        let _ = self
            .links
            .blocking(move |v| match v.get(&up, &p)? {
                Some(s) if rt.is_none() || s.refresh_token == rt => v.revoke_own(&up, &p),
                _ => Ok(false),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Refresher;

    #[test]
    fn tokens_are_refreshed_at_half_their_life_or_thirty_seconds_before_expiry() {
        let at = |obtained: u64, expires: Option<u64>| Secret {
            access_token: "t".into(),
            refresh_token: None,
            expires_at: expires,
            scope: None,
            client: Some(Refresher {
                issuer: "i".into(),
                token_endpoint: "t".into(),
                resource: "r".into(),
                client_id: "c".into(),
                auth_method: "none".into(),
                client_secret: None,
                obtained_at: obtained,
            }),
        };
        // An hour-long token: 30 s before it ends.
        assert!(!expiring(&at(1000, Some(4600)), 4569));
        assert!(expiring(&at(1000, Some(4600)), 4570));
        // A 4 s token: at half its life.
        assert!(!expiring(&at(1000, Some(1004)), 1001));
        assert!(expiring(&at(1000, Some(1004)), 1002));
        // No expiry said: never refreshed ahead.
        assert!(!expiring(&at(1000, None), u64::MAX / 2));
    }
}
