//! Human approval: a call whose rule says `approval = …` is held until a person decides.
//!
//! - `"user"`, and the client declared `elicitation`: Warden asks the calling client's user with
//!   `elicitation/create` (tool, a plain summary, the arguments) and goes on only on an explicit
//!   accept with `approve: true`.
//! - otherwise: an approval request is opened in the [`Store`] and the call waits (up to
//!   `[approval] wait_secs`) for a decision on the admin API. When the wait runs out the caller
//!   gets the approval's id; the request stays open for `ttl_secs`, and once approved the same
//!   call goes through.
//!
//! An approval is bound to the SHA-256 of (principal, server, tool, canonical arguments): it
//! covers exactly that call, by that caller, with those arguments, once (approved → consumed is
//! one atomic step in the store). The approver is recorded; a principal cannot approve its own
//! request unless `allow_self_approval`; a tenant's approvers see and decide only their tenant's.
//!
//! Defends against: an agent running destructive tools on injected instructions without anyone
//! noticing; replay of an approval for other arguments, another caller or a second run; approval
//! by the requester itself; approvals across tenants.
//! Does not defend against: a user who approves without reading (elicitation is the user's own
//! confirmation, not four eyes — use `"admin"` for that); a compromised admin token.

use crate::config::{ApprovalConfig, ApprovalMode};
use crate::error::GatewayError;
use crate::rpc::Peer;
use crate::store::{Approval, ApprovalState, Decision, Store};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use warden_policy::Principal;

/// How often a held call re-reads its approval (decisions made on this process wake it at once).
const POLL: Duration = Duration::from_millis(250);
/// Largest rendering of the arguments shown to an approver.
const MAX_SHOWN: usize = 4096;

pub struct Approvals {
    store: Arc<dyn Store>,
    cfg: ApprovalConfig,
    decided: Notify,
}

/// Who decides, as the admin API authenticated them.
pub struct Approver {
    /// Shown and recorded: `"principal:<subject>"` or `"admin-token:<declared name>"`.
    pub name: String,
    /// SHA-256 of the approver's binding key, when the approver is a principal.
    pub requester_key: Option<String>,
    /// `Some(t)`: may see and decide only tenant `t`'s approvals. `None`: every tenant's.
    pub tenant: Option<Option<String>>,
}

#[derive(Debug, PartialEq)]
pub enum DecideError {
    /// No such approval visible to this approver (also for other tenants').
    NotFound,
    /// Already decided, consumed or expired.
    NotPending,
    SelfApproval,
    Store(String),
}

/// SHA-256 of (principal, server, tool, canonical arguments), hex.
pub fn digest(p: &Principal, server: &str, tool: &str, args: &Value) -> String {
    let mut s = format!("{}\0{server}\0{tool}\0", p.binding_key());
    warden_policy::canonical::write(args, &mut s);
    crate::digest::hex(&crate::digest::sha256(s.as_bytes()))
}

/// The requester as a person (whatever credential they use), for the self-approval check.
fn requester_key(p: &Principal) -> String {
    crate::digest::hex(&crate::digest::sha256(p.person_key().as_bytes()))
}

/// Characters a person would not see (zero-width, bidi overrides, tags, controls) written out
/// as `[U+XXXX]`, so that an approver sees every character of what they approve: nothing is
/// removed (that would hide part of what runs), everything is shown.
fn reveal(s: &str) -> String {
    use warden_policy::sanitize::is_invisible;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_invisible(c) || (c.is_control() && c != '\n' && c != '\t') {
            out.push_str(&format!("[U+{:04X}]", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn shown(args: &Value) -> String {
    let mut s = reveal(&serde_json::to_string_pretty(args).unwrap_or_default());
    if s.len() > MAX_SHOWN {
        let mut cut = MAX_SHOWN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n… (truncated)");
    }
    s
}

/// Most approvals one listing returns.
pub const MAX_LISTED: usize = 1000;
/// Largest `arguments` (JSON bytes) a call held for an approver may carry: what is approved is
/// shown in full, so a larger call is refused rather than approved unseen.
const MAX_KEPT_ARGS: usize = 64 << 10;

enum Quota {
    Store(crate::store::StoreError),
    Over(&'static str),
}

fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    crate::digest::hex(&b)
}

/// Who let a held call through: the queue's approval id and its approver (both `None` when the
/// client's own user accepted an elicitation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub id: Option<String>,
    pub approver: Option<String>,
}

/// The call a person is asked about, and why, when more than its rule says so.
#[derive(Clone, Copy)]
pub struct Held<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub args: &'a Value,
    /// Added to the question (a tainted session's sink call, `taint.rs`).
    pub why: Option<&'a str>,
}

impl Approvals {
    pub fn new(store: Arc<dyn Store>, cfg: ApprovalConfig) -> Approvals {
        Approvals { store, cfg, decided: Notify::new() }
    }

    /// Hold a call until it is approved. `elicit` is the client's peer when it declared the
    /// elicitation capability.
    pub async fn require(
        &self,
        mode: ApprovalMode,
        p: &Principal,
        call: Held<'_>,
        elicit: Option<&Peer>,
    ) -> Result<Granted, GatewayError> {
        let Held { server, tool, args, why } = call;
        // A tainted session's call is its own question: an approval given (or asked) for the
        // same call from a clean session does not cover it.
        let d = if why.is_some() {
            digest(p, server, &format!("{tool}\0tainted"), args)
        } else {
            digest(p, server, tool, args)
        };
        let summary = reveal(&format!(
            "{} asks to run the tool \"{tool}\" of the server \"{server}\"{}.{}",
            p.subject,
            p.tenant.as_deref().map(|t| format!(" for tenant \"{t}\"")).unwrap_or_default(),
            why.map(|w| format!(" {w}")).unwrap_or_default()
        ));
        match (mode, elicit) {
            (ApprovalMode::User, Some(peer)) => {
                self.elicit(peer, p, call, &summary, &d).await.map(|()| Granted { id: None, approver: None })
            }
            _ => self.queue(p, call, summary, d).await,
        }
    }

    async fn elicit(
        &self,
        peer: &Peer,
        p: &Principal,
        call: Held<'_>,
        summary: &str,
        digest: &str,
    ) -> Result<(), GatewayError> {
        let Held { server, tool, args, .. } = call;
        let params = json!({
            "message": format!(
                "Approval needed. {summary}\n\nArguments:\n{}\n\nCall digest: {digest}",
                shown(args),
            ),
            "requestedSchema": {
                "type": "object",
                "properties": {"approve": {
                    "type": "boolean",
                    "title": "Approve this call",
                    "description": format!("Run {tool} with the arguments above"),
                    "default": false,
                }},
                "required": ["approve"],
            },
        });
        let wait = Duration::from_secs(self.cfg.wait_secs);
        let answer = tokio::time::timeout(wait, peer.request("elicitation/create", Some(params))).await;
        let refuse = |reason| {
            tracing::info!(subject = %p.subject, server, tool, reason, "approval by elicitation refused");
            Err(GatewayError::ApprovalDenied { id: None, reason })
        };
        match answer {
            Err(_) => refuse("the user did not answer in time"),
            Ok(Err(e)) => {
                tracing::info!(error = %e.message, "elicitation failed");
                refuse("the client could not ask its user")
            }
            Ok(Ok(r)) => {
                let approved = r.get("action").and_then(Value::as_str) == Some("accept")
                    && r.pointer("/content/approve").and_then(Value::as_bool) == Some(true);
                if !approved {
                    return refuse("declined by the user");
                }
                tracing::info!(subject = %p.subject, server, tool, approver = %format!("user:{} (elicitation)", p.subject),
                    digest = %digest, "call approved");
                Ok(())
            }
        }
    }

    async fn queue(
        &self,
        p: &Principal,
        call: Held<'_>,
        summary: String,
        digest: String,
    ) -> Result<Granted, GatewayError> {
        let Held { server, tool, args, .. } = call;
        let store_out = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "approval store out; call refused");
            GatewayError::StoreUnavailable
        };
        let now = crate::clock::now_secs();
        let fresh = Approval {
            id: random_id(),
            digest,
            requester: requester_key(p),
            subject: p.subject.clone(),
            tenant: p.tenant.clone(),
            server: server.into(),
            tool: tool.into(),
            arguments: args.clone(),
            summary,
            created: now,
            expires: now + self.cfg.ttl_secs,
            state: ApprovalState::Pending,
            approver: None,
            decided_at: None,
            note: None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.wait_secs);
        if serde_json::to_string(args).map_or(0, |t| t.len()) > MAX_KEPT_ARGS {
            return Err(GatewayError::ApprovalDenied {
                id: None,
                reason: "the arguments are too large to show an approver",
            });
        }
        self.within_quota(&fresh).await.map_err(|e| match e {
            Quota::Store(e) => store_out(e),
            Quota::Over(reason) => {
                tracing::info!(subject = %p.subject, server, tool, reason, "call refused: approval queue quota");
                GatewayError::ApprovalDenied { id: None, reason }
            }
        })?;
        let mut a = self.store.open_approval(&fresh).await.map_err(store_out)?;
        if a.id == fresh.id {
            tracing::info!(id = %a.id, subject = %p.subject, server, tool, "call held for approval");
        }
        loop {
            match a.state {
                ApprovalState::Approved if self.store.consume(&a.id).await.map_err(store_out)? => {
                    tracing::info!(id = %a.id, subject = %p.subject, server, tool,
                        approver = a.approver.as_deref().unwrap_or(""), "call approved");
                    return Ok(Granted { id: Some(a.id), approver: a.approver });
                }
                ApprovalState::Denied => {
                    return Err(GatewayError::ApprovalDenied { id: Some(a.id), reason: "denied by an approver" })
                }
                // An identical call used it first: this one needs its own.
                ApprovalState::Approved | ApprovalState::Consumed => {
                    a = self
                        .store
                        .open_approval(&Approval { id: random_id(), ..fresh.clone() })
                        .await
                        .map_err(store_out)?;
                    continue;
                }
                ApprovalState::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::ApprovalPending { id: a.id });
            }
            let wake = self.decided.notified();
            let _ = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + POLL), wake).await;
            a = match self.store.approval(&a.id).await.map_err(store_out)? {
                Some(x) => x,
                None => {
                    return Err(GatewayError::ApprovalDenied { id: Some(a.id), reason: "the approval request expired" })
                }
            };
        }
    }

    fn visible(a: &Approval, who: &Approver) -> bool {
        who.tenant.as_ref().is_none_or(|t| *t == a.tenant)
    }

    /// Approvals `who` may see, newest first.
    /// What `who` may see, newest first, at most [`MAX_LISTED`]: filtered before it is cut, so
    /// another tenant's queue cannot push this one's out of the listing.
    pub async fn list(&self, who: &Approver, state: Option<ApprovalState>) -> Result<Vec<Approval>, String> {
        let all = self.store.approvals(crate::store::MAX_APPROVALS).await.map_err(|e| e.to_string())?;
        let mut v: Vec<Approval> =
            all.into_iter().filter(|a| Self::visible(a, who) && state.is_none_or(|s| a.state == s)).collect();
        v.truncate(MAX_LISTED);
        Ok(v)
    }

    /// A new approval request is within its requester's and its tenant's quota of pending ones
    /// (a retry of a call already waiting is: it reuses its request).
    async fn within_quota(&self, fresh: &Approval) -> Result<(), Quota> {
        let all = self.store.approvals(crate::store::MAX_APPROVALS).await.map_err(Quota::Store)?;
        let live = |a: &&Approval| matches!(a.state, ApprovalState::Pending | ApprovalState::Approved);
        if all.iter().filter(live).any(|a| a.digest == fresh.digest) {
            return Ok(());
        }
        let pending: Vec<&Approval> = all.iter().filter(|a| a.state == ApprovalState::Pending).collect();
        if pending.iter().filter(|a| a.requester == fresh.requester).count() >= self.cfg.max_pending_per_caller {
            return Err(Quota::Over("too many of your calls are already waiting for approval"));
        }
        if pending.iter().filter(|a| a.tenant == fresh.tenant).count() >= self.cfg.max_pending_per_tenant {
            return Err(Quota::Over("too many calls of your tenant are already waiting for approval"));
        }
        Ok(())
    }

    pub async fn get(&self, who: &Approver, id: &str) -> Result<Option<Approval>, String> {
        let a = self.store.approval(id).await.map_err(|e| e.to_string())?;
        Ok(a.filter(|a| Self::visible(a, who)))
    }

    /// Approve or deny a pending approval.
    pub async fn decide(
        &self,
        who: &Approver,
        id: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Approval, DecideError> {
        let a = self
            .store
            .approval(id)
            .await
            .map_err(|e| DecideError::Store(e.to_string()))?
            .filter(|a| Self::visible(a, who))
            .ok_or(DecideError::NotFound)?;
        if approve && !self.cfg.allow_self_approval && who.requester_key.as_deref() == Some(a.requester.as_str()) {
            tracing::warn!(id, approver = %who.name, "self-approval refused");
            return Err(DecideError::SelfApproval);
        }
        let d = Decision { approve, approver: who.name.clone(), at: crate::clock::now_secs(), note };
        let out = self
            .store
            .decide(id, &d)
            .await
            .map_err(|e| DecideError::Store(e.to_string()))?
            .ok_or(DecideError::NotPending)?;
        tracing::warn!(id, approver = %who.name, approve, subject = %out.subject, server = %out.server,
            tool = %out.tool, "approval decided");
        self.decided.notify_waiters();
        Ok(out)
    }
}

impl Approver {
    /// An approver authenticated as a principal.
    pub fn principal(p: &Principal) -> Approver {
        Approver {
            name: format!("principal:{}", p.subject),
            requester_key: Some(requester_key(p)),
            tenant: p.tenant.clone().map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reveal;

    #[test]
    fn an_approver_sees_every_character() {
        assert_eq!(reveal("report\u{202E}fdp.exe"), "report[U+202E]fdp.exe");
        assert_eq!(reveal("a\u{200B}b\u{E0041}c\u{7}"), "a[U+200B]b[U+E0041]c[U+0007]");
        assert_eq!(reveal("plain\n\ttext é"), "plain\n\ttext é");
    }

    use super::*;

    #[test]
    fn digest_binds_principal_server_tool_and_arguments_not_key_order() {
        let p = Principal { subject: "alice".into(), tenant: Some("a".into()), ..Principal::local() };
        let args: Value = serde_json::from_str(r#"{"b": [1, 2], "a": {"y": 1, "x": 2}}"#).unwrap();
        let same: Value = serde_json::from_str(r#"{"a": {"x": 2, "y": 1}, "b": [1, 2]}"#).unwrap();
        let d = digest(&p, "fx", "drop", &args);
        assert_eq!(d, digest(&p, "fx", "drop", &same));
        let other_tenant = Principal { tenant: Some("b".into()), ..p.clone() };
        for other in [
            digest(&other_tenant, "fx", "drop", &args),
            digest(&p, "fy", "drop", &args),
            digest(&p, "fx", "drop2", &args),
            digest(&p, "fx", "drop", &json!({"a": {"x": 2, "y": 1}, "b": [2, 1]})),
            // Separators cannot be forged by moving text between fields.
            digest(&p, "fx\0drop", "", &args),
        ] {
            assert_ne!(d, other);
        }
    }
}
