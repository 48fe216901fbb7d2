//! An upstream of users' own accounts (`[upstream.oauth] mode = "user"`) that this user has not
//! linked, shown to a client that cannot be asked to open a link (no URL elicitation, as most
//! clients today; `Unlinked::Offer`): its tools are left out of the listing and one tool of
//! Warden's stands in for them, `link_account_<upstream>`, whose call answers with the link to
//! open, as a result the model reads and passes on to the user. The other upstreams' tools are
//! listed as ever. Once the user has linked, a 2025 session is told that the lists changed, and
//! the upstream's own tools are listed instead.
//!
//! Defends against: one unlinked upstream making every other upstream's tools unusable for such
//! clients; the tool handing out anyone's link but the caller's (the flow is started for this
//! session's user, `UserLink::ensure`; sessions are one user's); unbounded waiters (one per
//! session and upstream, for as long as a flow lives, ended with the session, woken by a link
//! made rather than polling often).
//! The stand-ins' names are Warden's: an upstream's tool that would be listed under one is
//! withheld (it could pose as Warden's and hand out its own link). The stand-in is neither
//! offered nor answered while the upstream is switched off.
//!
//! Does not defend against: a user who never links holding a flow from each call of the
//! stand-in (one waiting flow per user and upstream, reused; listings start none).

use super::session::RelaySession;
use crate::error::GatewayError;
use crate::upstream::user::{UserLink, FLOW_TTL};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use warden_policy::rules::Kind;
use warden_policy::Principal;

const PREFIX: &str = "link_account_";

/// The stand-in's name for `upstream` (upstream names are valid tool names, at most 32 long).
pub fn name(upstream: &str) -> String {
    format!("{PREFIX}{upstream}")
}

/// The stand-in's definition, as listed.
pub fn definition(upstream: &str) -> Value {
    json!({
        "name": name(upstream),
        "title": format!("Link your account at {upstream}"),
        "description": format!(
            "Your account at {upstream} is not linked to Warden yet, so {upstream}'s tools are not \
             listed. Call this tool to get the link the user must open in a browser to link it; \
             once linked, {upstream}'s own tools are listed instead."
        ),
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
        "annotations": {"readOnlyHint": true, "destructiveHint": false, "openWorldHint": false},
    })
}

fn text(t: String) -> Value {
    json!({"content": [{"type": "text", "text": t}]})
}

impl RelaySession {
    /// The answer to a call of `name` when it is the stand-in of an upstream of users' own
    /// accounts that this session reaches and whose tools `p` may list; `None` otherwise (a
    /// prefix compare: any other name costs nothing more). A client that can be `ask`ed to
    /// open the link gets the error that asks it
    /// (`pipeline/link.rs`; once linked, the call runs again and says so).
    pub async fn link_tool(
        &self,
        p: &Principal,
        name: &str,
        ask: impl FnOnce() -> bool,
    ) -> Option<Result<Value, GatewayError>> {
        let upstream = name.strip_prefix(PREFIX)?;
        let i = (0..self.slots.len()).find(|&i| self.shared.specs[i].name == upstream && self.reaches(i))?;
        let link = self.shared.specs[i].for_tenant(self.principal.tenant.as_deref())?.user.clone()?;
        if !self.shared.policy.may_list(p, i, Kind::Tool) || self.shared.policy.kills.killed(upstream, None) {
            return None;
        }
        Some(match link.ensure(&self.principal).await {
            Ok(()) => Ok(text(format!(
                "Your account at {upstream} is already linked to Warden: its tools are listed (list the tools again \
                 if they are not shown)."
            ))),
            Err(e @ GatewayError::LinkRequired { .. }) if ask() => Err(e),
            Err(GatewayError::LinkRequired { url, .. }) => {
                self.notify_when_linked(i, link);
                Ok(text(format!(
                    "To use {upstream}, the user must link their account there to Warden. Ask them to open this \
                     link in a browser: {url} \nWarden's page names the Warden user the link is for, then sends them \
                     to {upstream}'s sign-in. Once linked, {upstream}'s tools are listed (list the tools again if \
                     they are not shown). The link is theirs alone and expires in 10 minutes."
                )))
            }
            Err(e) => Err(e),
        })
    }

    /// A 2025 session is told that its lists changed once its user has linked upstream `i`
    /// (waiting at most as long as the flow lives, or the session).
    fn notify_when_linked(&self, i: usize, link: Arc<UserLink>) {
        if self.stateless || !self.routes.lock().link_waits.insert(i) {
            return;
        }
        let (me, gone, owner) = (self.me.clone(), self.gone.clone(), self.principal.clone());
        tokio::spawn(async move {
            let linked = tokio::select! {
                _ = gone.cancelled() => false,
                l = link.until_linked(&owner, Instant::now() + FLOW_TTL) => l,
            };
            let Some(s) = me.upgrade() else { return };
            s.routes.lock().link_waits.remove(&i);
            if linked {
                s.routes_stale();
                let peer = s.peer.session_level();
                for kind in ["tools", "prompts", "resources"] {
                    peer.notify(&format!("notifications/{kind}/list_changed"), None);
                }
            }
        });
    }
}
