//! Stage 5½, for an upstream of each user's own account (`[upstream.oauth] mode = "user"`,
//! `upstream/user/`): a request that routing or a listing answered with
//! [`GatewayError::LinkRequired`]. A client that takes URL elicitation is asked to open the
//! link (`elicitation/create`, mode `url`: a 2025-11-25 session's request, a 2026-07-28
//! client's `input_required` for a call, read or prompt); once the user accepts, the request
//! waits for the link (at most [`LINK_WAIT`]) and then runs again, once; a listing the user
//! declined goes on without that upstream. A call the client cannot be asked about, or one
//! whose user declines, gets the error: -32042 with the link, in its message too. A listing
//! that cannot ask (any 2026-07-28 listing, any client without URL elicitation) is not failed:
//! it shows the other upstreams' names and a stand-in tool whose call asks, or answers with the
//! link (`relay/link_tool.rs`).
//!
//! Defends against: a request waiting forever (bounded wait); a loop (one run again only).
//! Does not defend against: the user linking another account than they meant (the page names
//! the Warden user; the upstream's sign-in is theirs).

use super::Method;
use crate::error::GatewayError;
use crate::relay::session::RelaySession;
use crate::relay::Unlinked;
use crate::rpc::Peer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Longest wait for a link the user accepted to open.
pub const LINK_WAIT: Duration = Duration::from_secs(300);

/// Whether the client of `s` can be asked to open a link for `method`: it takes URL-mode
/// elicitation, and (2026-07-28) the request may answer `input_required` (a call, a read, a
/// prompt; never a listing).
pub fn may_ask(s: &RelaySession, method: Option<Method>) -> bool {
    let asks = |m: Method| !s.stateless || matches!(m, Method::ToolsCall | Method::ResourcesRead | Method::PromptsGet);
    takes_url(s) && method.is_some_and(asks)
}

fn takes_url(s: &RelaySession) -> bool {
    s.client_caps.pointer("/elicitation/url").is_some_and(Value::is_object)
}

/// What a listing (`method`) of `s` does with an upstream its user has not linked: a client
/// that can be asked here gets the link (a 2025-11-25 session that takes URL elicitation);
/// any other gets the other upstreams' names and a stand-in tool that answers with the link
/// (`relay/link_tool.rs`; a 2026-07-28 client that takes URL elicitation is asked when it calls
/// it). A listing is never failed for want of a link: the user may not want that upstream.
pub fn unlinked(s: &RelaySession, method: Option<Method>) -> Unlinked {
    if may_ask(s, method) {
        Unlinked::Answer
    } else {
        Unlinked::Offer
    }
}

/// Ask the user to open the link of `e` and wait for it: whether the account is linked now.
pub async fn ask(s: &RelaySession, peer: &Peer, e: &GatewayError) -> bool {
    let GatewayError::LinkRequired { upstream, url } = e else { return false };
    let Some(link) = (s.shared.specs.iter().find(|x| &x.name == upstream))
        .and_then(|x| x.for_tenant(s.principal.tenant.as_deref()))
        .and_then(|x| x.user.clone())
    else {
        return false;
    };
    let params = json!({
        "mode": "url",
        "message": format!("Link your account at {upstream} to Warden to use it: Warden's page names the Warden user it is for, then sends you to {upstream}'s sign-in."),
        "url": url,
        "elicitationId": url.rsplit('/').next().unwrap_or_default(),
    });
    // One deadline for the answer and the link together.
    let until = Instant::now() + LINK_WAIT;
    let answer = tokio::time::timeout(LINK_WAIT, peer.request("elicitation/create", Some(params))).await;
    let accepted = matches!(&answer, Ok(Ok(r)) if r.get("action").and_then(Value::as_str) == Some("accept"));
    if !accepted {
        tracing::info!(upstream = %upstream, subject = %s.principal.subject, "link not accepted");
        return false;
    }
    link.until_linked(&s.principal, until).await
}
