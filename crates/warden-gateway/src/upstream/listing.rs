//! Reading an upstream's listings whole, within bounds: every page of one listing for a
//! session (`Conn::list_all`) and everything an upstream offers for `warden scan`/`warden pin`
//! (`list_definitions`).

use super::shared::Caller;
use super::{err, Conn, ServerHandler, Spec};
use serde_json::{json, Value};
use std::sync::Arc;
use warden_protocol::jsonrpc::{self, ErrorObject, Message};
use warden_protocol::version;

/// Everything an upstream offers, read once (`warden scan`, `warden pin`).
#[derive(Debug, Default, serde::Serialize)]
pub struct Definitions {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub instructions: Option<String>,
}

/// Connect to one upstream, read every listing it declares, and disconnect. Requests the server
/// sends meanwhile are refused (no client is behind this connection).
pub async fn list_definitions(spec: &Spec, http: &reqwest::Client) -> Result<Definitions, String> {
    let init = json!({"protocolVersion": version::LATEST, "capabilities": {},
                      "clientInfo": {"name": "warden-scan", "version": env!("CARGO_PKG_VERSION")}});
    let handler: ServerHandler = Arc::new(|conn: &Arc<Conn>, msg, _| {
        if let Message::Request { id, .. } = msg {
            let c = conn.clone();
            tokio::spawn(async move { c.respond(id, Err(err(jsonrpc::METHOD_NOT_FOUND, "not supported"))).await });
        }
    });
    let conn = Conn::connect(spec, init, handler, http).await?;
    let mut d = Definitions { instructions: conn.init().and_then(|i| i.instructions), ..Default::default() };
    let mut result = Ok(());
    for (cap, method, field, out) in [
        ("tools", "tools/list", "tools", &mut d.tools),
        ("prompts", "prompts/list", "prompts", &mut d.prompts),
        ("resources", "resources/list", "resources", &mut d.resources),
    ] {
        if conn.has_capability(cap) {
            match conn.list_all(method, field, SCAN_LIMIT).await {
                Ok(l) => {
                    if l.dropped > 0 || l.more {
                        tracing::warn!(upstream = %spec.name, method, "more than {SCAN_LIMIT} definitions; the rest are not scanned");
                    }
                    *out = l.items
                }
                Err(e) => {
                    result = Err(format!("{method}: {e}"));
                    break;
                }
            }
        }
    }
    conn.close().await;
    result.map(|()| d)
}

/// Most pages read from one listing.
pub const MAX_PAGES: usize = 50;

/// What one listing read: its items, and how many it dropped beyond the cap (`more`: and there
/// were further pages, not read).
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Value>,
    pub dropped: usize,
    pub more: bool,
}

/// `warden scan` reads at most this many definitions of each kind.
const SCAN_LIMIT: usize = 10_000;

impl Conn {
    /// Every page of a listing (`tools/list`, …): the items under `field`, at most `limit` of
    /// them (the rest of the page that crosses it is dropped and counted, and no further page is
    /// asked for) and at most `MAX_PAGES` pages (a server that pages forever is cut off, with a
    /// warning). A hostile server cannot make Warden hold, vet or pin more than `limit`
    /// definitions of one kind.
    pub async fn list_all(&self, method: &str, field: &str, limit: usize) -> Result<Listing, ErrorObject> {
        self.list_all_as(None, method, field, limit).await
    }

    /// [`Conn::list_all`] for one caller of a shared connection.
    pub async fn list_all_as(
        &self,
        caller: Option<&Caller>,
        method: &str,
        field: &str,
        limit: usize,
    ) -> Result<Listing, ErrorObject> {
        let mut l = Listing::default();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|c| json!({ "cursor": c }));
            let mut page = self.call_as(caller, method, params, None).await?;
            if let Some(Value::Array(a)) = page.get_mut(field).map(Value::take) {
                let room = limit.saturating_sub(l.items.len());
                l.dropped += a.len().saturating_sub(room);
                l.items.extend(a.into_iter().take(room));
            }
            match page.get("nextCursor") {
                Some(c) if !c.is_null() && l.dropped == 0 => cursor = Some(c.clone()),
                Some(c) if !c.is_null() => {
                    l.more = true;
                    return Ok(l);
                }
                _ => return Ok(l),
            }
        }
        tracing::warn!(upstream = %self.name, method, "listing has more than {MAX_PAGES} pages; truncated");
        l.more = true;
        Ok(l)
    }
}
