//! Control connections: one per upstream, Warden's own (not any client's), kept up with
//! backoff. They tell readiness (`/readyz`), learn each upstream's capabilities and names for
//! sessions, and report name collisions and look-alike tool names when an upstream's listing
//! changes. Read by the admin API; started by `gateway.rs`.

use crate::auth::Authenticator;
use crate::relay::{report_collisions, report_confusables, Shared};
use crate::upstream::{Conn, ServerHandler};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What one upstream lists: the client-visible `cap:name` entries and the tools' own names.
#[derive(Clone)]
struct Listed {
    entries: Vec<String>,
    tools: Vec<String>,
    /// The tools' and prompts' definitions, as the upstream listed them to Warden itself
    /// (bounded by `content.max_definitions` per kind): what the console lists.
    definitions: Vec<(&'static str, Value)>,
}

/// Control connections: one per upstream, Warden's own, for readiness and name collisions.
pub struct Control {
    shared: Arc<Shared>,
    conns: Vec<Mutex<Option<Arc<Conn>>>>,
    names: Mutex<Vec<Option<Listed>>>,
    collisions: Mutex<Vec<String>>,
    /// Look-alike tool names offered by different upstreams (shadowing).
    confusables: Mutex<Vec<String>>,
    /// Successful connects of each control connection (restarts + 1).
    connects: Vec<std::sync::atomic::AtomicU64>,
    /// Each upstream's name refresh: 0 idle, 1 running, 2 running with another asked for.
    refreshing: Vec<std::sync::atomic::AtomicU8>,
    /// Token issuers, whose keys readiness waits for.
    auth: Option<Arc<Authenticator>>,
    /// Closed ([`Control::close`]): nothing connects again (a reload replaced this set).
    closed: std::sync::atomic::AtomicBool,
}

impl Control {
    pub(crate) fn new(shared: Arc<Shared>, auth: Option<Arc<Authenticator>>) -> Arc<Control> {
        let n = shared.specs.len();
        Arc::new(Control {
            shared,
            conns: (0..n).map(|_| Mutex::new(None)).collect(),
            names: Mutex::new(vec![None; n]),
            collisions: Mutex::new(vec![]),
            confusables: Mutex::new(vec![]),
            connects: (0..n).map(|_| Default::default()).collect(),
            refreshing: (0..n).map(|_| Default::default()).collect(),
            auth,
            closed: false.into(),
        })
    }

    /// Each upstream: name, connected, restarts (reconnects after the first connect).
    pub fn health(&self) -> Vec<(String, bool, u64)> {
        self.shared
            .specs
            .iter()
            .zip(&self.conns)
            .zip(&self.connects)
            .map(|((s, c), n)| {
                let up = c.lock().as_ref().is_some_and(|c| c.is_alive());
                (s.name.clone(), up, n.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(1))
            })
            .collect()
    }

    /// Keep each control connection up (reconnecting with backoff) for the life of `self`.
    pub(crate) fn start(self: &Arc<Self>) {
        for i in 0..self.shared.specs.len() {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(500);
                // A refused program is audited once per streak of refusals, not per retry.
                let mut refused = false;
                loop {
                    let Some(c) = me.upgrade() else { return };
                    if c.closed.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    // An upstream of each user's own account has no connection of Warden's own:
                    // only users' (linked) connections reach it.
                    if c.shared.specs[i].user.is_some() {
                        return;
                    }
                    let alive = c.conns[i].lock().as_ref().is_some_and(|c| c.is_alive());
                    if !alive {
                        let spec = &c.shared.specs[i];
                        let init = json!({"protocolVersion": warden_protocol::version::LATEST, "capabilities": {},
                                          "clientInfo": {"name": "warden-control", "version": env!("CARGO_PKG_VERSION")}});
                        let me2 = me.clone();
                        let handler: ServerHandler = Arc::new(move |conn: &Arc<Conn>, msg, _| {
                            if let Some(m) = msg.method() {
                                if m.ends_with("/list_changed") {
                                    if let Some(c) = me2.upgrade() {
                                        c.schedule_refresh(i, conn.clone());
                                    }
                                }
                            }
                        });
                        match Conn::connect(spec, init, handler, &c.shared.http).await {
                            // Closed while connecting: this connection is not wanted any more.
                            Ok(conn) if c.closed.load(std::sync::atomic::Ordering::Acquire) => {
                                conn.close().await;
                                return;
                            }
                            Ok(conn) => {
                                tracing::info!(upstream = %spec.name, protocol = %conn.init().map(|i| i.protocol_version).unwrap_or_default(), "upstream ready");
                                c.connects[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                *c.conns[i].lock() = Some(conn.clone());
                                *c.shared.known[i].lock() = conn.init();
                                if let Some(text) = conn.init().and_then(|i| i.instructions) {
                                    c.shared.registry.vet_instructions(&spec.name, &text);
                                }
                                c.refresh_names(i, &conn).await;
                                backoff = Duration::from_millis(500);
                                refused = false;
                            }
                            Err(e) => {
                                tracing::warn!(upstream = %spec.name, error = %e, retry_in = ?backoff, "upstream not ready");
                                if e.starts_with(crate::upstream::program::CHANGED) && !refused {
                                    refused = true;
                                    let mut ev = warden_audit::Event::new("supply_chain", "blocked_by_guard");
                                    ev.decision = Some("denied".into());
                                    ev.server = Some(spec.name.clone());
                                    ev.detail = Some(e.clone());
                                    c.shared.audit.emit(ev);
                                }
                                *c.conns[i].lock() = None;
                                drop(c);
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_secs(30));
                                continue;
                            }
                        }
                    }
                    drop(c);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    }

    /// A `list_changed` from upstream `i`: refresh its names, debounced. At most one refresh
    /// runs per upstream, at most one more is queued however many notifications arrive meanwhile
    /// (a storm costs one listing per `REFRESH_GAP`, not one per notification), and refreshes
    /// of one upstream are `REFRESH_GAP` apart.
    fn schedule_refresh(self: Arc<Self>, i: usize, mut conn: Arc<Conn>) {
        use std::sync::atomic::Ordering::AcqRel;
        const REFRESH_GAP: Duration = Duration::from_secs(1);
        let state = &self.refreshing[i];
        if state.fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |s| Some(if s == 0 { 1 } else { 2 }))
            != Ok(0)
        {
            return;
        }
        tokio::spawn(async move {
            loop {
                // The connection of now: it may have been replaced since the notification.
                if let Some(c) = self.conns[i].lock().as_ref().filter(|c| c.is_alive()) {
                    conn = c.clone();
                }
                self.refresh_names(i, &conn).await;
                tokio::time::sleep(REFRESH_GAP).await;
                // 1 → 0: nothing more was asked for; 2 → 1: once more.
                if self.refreshing[i].compare_exchange(1, 0, AcqRel, std::sync::atomic::Ordering::Acquire).is_ok() {
                    return;
                }
                self.refreshing[i].store(1, std::sync::atomic::Ordering::Release);
            }
        });
    }

    /// Re-read upstream `i`'s tool and prompt names and re-check collisions and look-alikes.
    async fn refresh_names(&self, i: usize, conn: &Arc<Conn>) {
        let mut names = Vec::new();
        let mut tools = Vec::new();
        let mut definitions = Vec::new();
        for (cap, method, field) in [("tools", "tools/list", "tools"), ("prompts", "prompts/list", "prompts")] {
            if !conn.has_capability(cap) {
                continue;
            }
            // A listing that fails keeps what was known (a dead connection must not empty the
            // collision and look-alike reports).
            let Ok(l) = conn.list_all(method, field, self.shared.content.max_definitions()).await else { return };
            if l.dropped > 0 || l.more {
                self.shared.registry.over_cap(&self.shared.specs[i].name, field, l.dropped.max(1));
            }
            let items = l.items;
            for it in &items {
                if let Some(n) = it.get("name").and_then(Value::as_str) {
                    names.push(format!("{cap}:{}", self.shared.ns.name(i, n)));
                    if cap == "tools" {
                        tools.push(n.to_string());
                    }
                }
            }
            definitions.extend(items.into_iter().map(|it| (if cap == "tools" { "tool" } else { "prompt" }, it)));
        }
        let mut all = Vec::new();
        let mut all_tools = Vec::new();
        // The reports are written while the listings are held: two upstreams refreshing at once
        // cannot leave the report of the one that saw less (a stale, empty one) as the last.
        let mut g = self.names.lock();
        g[i] = Some(Listed { entries: names, tools, definitions });
        for (s, l) in self.shared.specs.iter().zip(g.iter()).filter_map(|(s, l)| Some((s, l.as_ref()?))) {
            all.push((s.name.clone(), l.entries.clone()));
            all_tools.extend(l.tools.iter().map(|t| (s.name.clone(), t.clone())));
        }
        let big = all_tools.len() > 1000;
        let (collisions, confusables) =
            crate::blocking::heavy(big, || (report_collisions(&all), report_confusables(&all_tools)));
        *self.collisions.lock() = collisions;
        *self.confusables.lock() = confusables;
        drop(g);
    }

    /// Every upstream's tools and prompts as it last listed them to Warden: upstream, kind
    /// (`tool` or `prompt`), definition.
    pub fn definitions(&self) -> Vec<(String, &'static str, Value)> {
        let g = self.names.lock();
        let mut out = Vec::new();
        for (s, l) in self.shared.specs.iter().zip(g.iter()).filter_map(|(s, l)| Some((s, l.as_ref()?))) {
            out.extend(l.definitions.iter().map(|(k, d)| (s.name.clone(), *k, d.clone())));
        }
        out
    }

    /// Each started stdio upstream's sandbox layers and their state (`namespaces=active …`).
    pub fn sandbox_summaries(&self) -> std::collections::HashMap<String, String> {
        self.shared
            .specs
            .iter()
            .zip(&self.conns)
            .filter_map(|(s, c)| Some((s.name.clone(), c.lock().as_ref()?.sandbox_report()?.summary())))
            .collect()
    }

    /// Groups of tool names of different upstreams that look alike (one line each).
    pub fn confusables(&self) -> Vec<String> {
        self.confusables.lock().clone()
    }

    pub fn status(&self) -> (bool, Value) {
        let mut ready = true;
        let mut ups = serde_json::Map::new();
        for (s, c) in self.shared.specs.iter().zip(&self.conns) {
            if s.user.is_some() {
                ups.insert(s.name.clone(), "per user (each links their own account)".into());
                continue;
            }
            let ok = c.lock().as_ref().is_some_and(|c| c.is_alive());
            ready &= ok;
            ups.insert(s.name.clone(), (if ok { "ready" } else { "unavailable" }).into());
        }
        // An issuer without keys is reported, but does not make the replica unready: API keys,
        // other issuers and mTLS still work, and every replica shares the issuer's outage.
        let mut issuers = serde_json::Map::new();
        for (iss, st) in self.auth.iter().flat_map(|a| a.key_status()) {
            let state = match (st.keys, st.failures) {
                (0, 0) => "no keys yet".to_string(),
                (0, n) => format!("no keys: {n} failed fetch(es), retrying"),
                (k, 0) => format!("{k} key(s)"),
                (k, n) => format!("{k} key(s); refresh failing ({n} failed fetch(es))"),
            };
            issuers.insert(iss, state.into());
        }
        // Each started stdio upstream's sandbox layers that are not in force: reported, never a
        // reason to be unready (`strict` is the setting that refuses to run without them).
        let mut sandbox = serde_json::Map::new();
        for (s, c) in self.shared.specs.iter().zip(&self.conns) {
            if let Some(r) = c.lock().as_ref().and_then(|c| c.sandbox_report()) {
                sandbox.insert(s.name.clone(), json!({"missing": r.missing(), "partial": r.partial()}));
            }
        }
        // The trail's disk under its watermark: not ready, so that a load balancer sends calls
        // elsewhere before the trail fills (calls here are still served and recorded).
        let disk = self.shared.audit.disk_low();
        ready &= disk.is_none();
        let mut body = json!({"ready": ready, "upstreams": ups, "collisions": *self.collisions.lock(),
                              "confusable_tools": *self.confusables.lock()});
        if let Some((free, min)) = disk {
            body["audit"] = json!({"disk": "low", "free_mb": free >> 20, "min_free_mb": min >> 20});
        }
        if !issuers.is_empty() {
            body["issuers"] = issuers.into();
        }
        if !sandbox.is_empty() {
            body["sandbox"] = sandbox.into();
        }
        (ready, body)
    }

    pub(crate) async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        let conns: Vec<Arc<Conn>> = self.conns.iter().filter_map(|c| c.lock().take()).collect();
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
    }
}
