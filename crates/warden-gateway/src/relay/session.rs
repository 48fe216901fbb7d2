//! One client session's state in the relay: what all sessions share ([`Shared`]), the
//! session's principal and client, its connection slots (one per upstream, `upstreams.rs`) and
//! its route table (from its last listing, `list.rs`), and how it follows the kill switches.

use crate::namespace::Namespaces;
use crate::rpc::Peer;
use crate::upstream::{Conn, ServerInit, Spec};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use warden_policy::Principal;

/// What is shared by all sessions.
pub struct Shared {
    pub specs: Vec<Spec>,
    /// The protocol extensions relayed (`[federation] extensions`).
    pub extensions: crate::extensions::Extensions,
    pub ns: Namespaces,
    pub http: reqwest::Client,
    /// What each upstream said to Warden's control connection, when it is up. Sessions answer
    /// `initialize` from this and connect to the upstream on first use.
    pub known: Vec<Mutex<Option<ServerInit>>>,
    /// Authorization, limits and kill switches.
    pub policy: Arc<crate::policy::Policy>,
    /// Calls held for a person's decision.
    pub approvals: Arc<crate::approval::Approvals>,
    /// Argument and output checks.
    pub content: Arc<crate::content::Content>,
    /// Pins and the poisoning scan of tool definitions.
    pub registry: Arc<crate::registry::Registry>,
    /// The audit trail and metrics.
    pub audit: Arc<crate::audit::Audit>,
    /// Where spans go (`[telemetry] traces_url`).
    pub traces: Option<Arc<crate::trace::Exporter>>,
    /// Seals and opens the task ids clients are given (`pipeline/task.rs`).
    pub tasks: crate::task_handle::TaskHandles,
    /// Each upstream's shared connection when it is stateless (`upstream/shared.rs`), by tenant
    /// spec ("" for the base one).
    pub stateless: Vec<Mutex<HashMap<String, Weak<Conn>>>>,
    /// Which config generation this is (`reload.rs`): 0 at start, one more per reload.
    pub generation: u64,
    /// The config this generation was built from, defaults applied (`GET /admin/config`).
    pub config: Arc<crate::config::Config>,
}

/// A client-visible name or URI → (upstream, upstream's own name or URI, effectively read-only).
pub(super) type RouteTable = HashMap<String, (usize, String, bool)>;

#[derive(Default)]
pub(super) struct Routes {
    pub(super) tools: RouteTable,
    pub(super) prompts: RouteTable,
    pub(super) resources: RouteTable,
    /// Tools and prompts the policy hides from this session (`tools:`/`prompts:` + name), so a
    /// call to one is recorded as denied, with its rule, not as unknown.
    pub(super) hidden: RouteTable,
    pub(super) refreshed: Option<Instant>,
    /// Kill-switch generation at the last tools listing.
    pub(super) kill_gen: u64,
    /// The vetted definition of each listed tool, by (upstream, its own name).
    pub(super) vetted: HashMap<(usize, String), Arc<crate::registry::Vetted>>,
    /// Upstreams of users' own accounts left out of the last tools listing, unlinked: a name
    /// missed refreshes the table at once when one of them is linked now.
    pub(super) unlinked: Vec<usize>,
    /// Upstreams of users' own accounts whose link this session waits for (`link_tool.rs`).
    pub(super) link_waits: std::collections::HashSet<usize>,
}

pub(super) struct Slot {
    pub(super) conn: tokio::sync::Mutex<Option<super::upstreams::Lease>>,
    pub(super) retry_at: Mutex<Option<(Instant, Duration)>>,
}

pub struct RelaySession {
    pub shared: Arc<Shared>,
    pub(super) peer: Peer,
    /// Who opened this session; the policy stages read it.
    pub principal: Arc<Principal>,
    pub client_caps: Value,
    /// A digest of the transport's session id (the id itself is not recorded) and the client's
    /// address, for audit records.
    pub session_tag: String,
    pub client_addr: Option<String>,
    /// A 2026-07-28 client's pooled session: what it asks of the client goes as
    /// `input_required`, which only calls, reads and prompts may answer.
    pub stateless: bool,
    /// Whether it has read untrusted content (`taint.rs`).
    pub taint: crate::taint::Taint,
    pub(super) upstream_init: Value,
    pub(super) slots: Vec<Slot>,
    pub(super) routes: Mutex<Routes>,
    pub(super) closed: AtomicBool,
    /// Ends this session's background tasks.
    pub(super) gone: tokio_util::sync::CancellationToken,
    pub(super) me: Weak<RelaySession>,
}

impl RelaySession {
    /// An audit event of this session: who, from where, which method.
    /// An audit event of this session, as `p` (the request's caller).
    pub fn event(&self, p: &Principal, kind: &str, status: &str, method: Option<&str>) -> warden_audit::Event {
        let mut e = warden_audit::Event::new(kind, status);
        crate::audit::Audit::principal(&mut e, p);
        e.session = Some(self.session_tag.clone());
        e.client_addr.clone_from(&self.client_addr);
        e.method = method.map(str::to_string);
        e
    }

    /// May this session's principal reach upstream `i` at all (per-tenant upstreams)?
    pub fn reaches(&self, i: usize) -> bool {
        self.shared.specs[i].for_tenant(self.principal.tenant.as_deref()).is_some()
    }

    /// A kill switch flipped (here or on another replica): what this session may list changed.
    pub(super) fn follow_kill_switches(&self) {
        let mut rx = self.shared.policy.kills.subscribe();
        let me = self.me.clone();
        let gone = self.gone.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = gone.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                }
                let Some(s) = me.upgrade() else { return };
                s.routes.lock().refreshed = None;
                let peer = s.peer.session_level();
                for kind in ["tools", "prompts", "resources"] {
                    peer.notify(&format!("notifications/{kind}/list_changed"), None);
                }
            }
        });
    }

    /// Rewrite URIs in a `resources/read` result to the client-visible form.
    pub fn rewrite_contents(&self, i: usize, mut result: Value) -> Value {
        if let Some(Value::Array(items)) = result.get_mut("contents") {
            for it in items {
                if let Some(u) = it.get("uri").and_then(Value::as_str) {
                    let n = self.shared.ns.uri(i, u);
                    it["uri"] = n.into();
                }
            }
        }
        result
    }
}
