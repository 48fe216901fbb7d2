//! A session's listings: fanned out to every upstream it reaches, renamed into its namespace,
//! filtered by the rules (a hidden name is remembered as hidden), vetted (pins, scan, schema;
//! `registry/`), merged with colliding names withheld, and kept as the session's route table,
//! from which names and URIs are resolved (refreshed at most once a second on a miss).

use super::session::{RelaySession, RouteTable, Routes};
use crate::error::GatewayError;
use crate::namespace;
use crate::pipeline::Method;
use crate::registry::PinKind;
use crate::upstream::user::UserLink;
use crate::upstream::Listing;
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_policy::rules::Kind;
use warden_policy::Principal;

/// What a listing does with an upstream of users' own accounts that this user has not linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    /// The listing answers with the link ([`GatewayError::LinkRequired`]): for a client that
    /// takes URL elicitation (asked to open it, or told with -32042 as the spec has it).
    Answer,
    /// Left out: the user declined to link it, or the listing only refreshes the route table.
    LeaveOut,
    /// Left out, and a tools listing offers a stand-in that answers with the link
    /// (`link_tool.rs`): for a client that cannot be asked.
    Offer,
}

impl RelaySession {
    /// Fan a listing out to every upstream that has the capability, rename, and merge.
    /// Colliding names are withheld from the answer and from routing. An upstream of users' own
    /// accounts that this user has not linked is handled as `unlinked` says.
    pub async fn list(&self, method: Method, p: &Principal, unlinked: Unlinked) -> Result<Value, GatewayError> {
        let (cap, field) = method.listing().ok_or(GatewayError::MethodNotFound)?;
        let ns = &self.shared.ns;
        let kind = match cap {
            "tools" => Kind::Tool,
            "prompts" => Kind::Prompt,
            _ => Kind::Resource,
        };
        // An upstream that could show this caller nothing is not asked, so not started either.
        let ups: Vec<usize> =
            (0..self.slots.len()).filter(|&i| self.reaches(i) && self.shared.policy.may_list(p, i, kind)).collect();
        let pages = join_all(ups.iter().map(|&i| async move {
            // Not linked, and this listing does not hand the link out: no flow is started.
            if unlinked != Unlinked::Answer && !self.ready(i).await {
                return (i, None);
            }
            let page = match self.conn(i).await {
                Ok(c) if c.has_capability(cap) => c
                    .list_all(method.as_str(), field, self.shared.content.max_definitions())
                    .await
                    .map_err(GatewayError::from),
                Ok(_) => Ok(Listing::default()),
                Err(e) => Err(e),
            };
            (i, Some(page))
        }))
        .await;
        // An upstream of each user's own account that this user has not linked (the user's
        // tools there are unknown until then).
        let mut not_linked = Vec::new();
        let mut listed = Vec::new();
        for (i, page) in pages {
            match page {
                Some(Err(e @ GatewayError::LinkRequired { .. })) if unlinked == Unlinked::Answer => return Err(e),
                None | Some(Err(GatewayError::LinkRequired { .. })) => not_linked.push(i),
                Some(page) => listed.push((i, page)),
            }
        }
        let offered: Vec<usize> = match (unlinked, kind) {
            (Unlinked::Offer, Kind::Tool) => not_linked.clone(),
            _ => Vec::new(),
        };
        // The stand-ins' names are Warden's: an upstream's tool of that name is withheld.
        let reserved: Vec<String> = (0..self.slots.len())
            .filter(|&i| self.shared.specs[i].user.is_some())
            .map(|i| super::link_tool::name(&self.shared.specs[i].name))
            .collect();
        let key = if field == "resourceTemplates" {
            "uriTemplate"
        } else if cap == "resources" {
            "uri"
        } else {
            "name"
        };
        let mut entries: Vec<(String, usize, String, Value)> = Vec::new();
        for (i, res) in listed {
            let items = match res {
                Ok(l) => {
                    if l.dropped > 0 || l.more {
                        self.shared.registry.over_cap(&self.shared.specs[i].name, field, l.dropped.max(1));
                    }
                    l.items
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.shared.specs[i].name, method = method.as_str(), error = %e, "listing failed; upstream left out");
                    continue;
                }
            };
            for item in items {
                let Some(orig) = item.get(key).and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                let exposed = match cap {
                    "tools" => match ns.tool_name(i, &orig) {
                        Some(n) if reserved.contains(&n) => {
                            tracing::warn!(upstream = %self.shared.specs[i].name, name = %n, "tool with the name of Warden's link tool withheld");
                            continue;
                        }
                        Some(n) => n,
                        None => {
                            tracing::warn!(upstream = %self.shared.specs[i].name, "tool with an invalid name withheld");
                            continue;
                        }
                    },
                    "prompts" => ns.name(i, &orig),
                    _ => ns.uri(i, &orig),
                };
                entries.push((exposed, i, orig, item));
            }
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (e, ..) in &entries {
            *count.entry(e.as_str()).or_default() += 1;
        }
        let dup: std::collections::HashSet<String> =
            count.into_iter().filter(|(_, n)| *n > 1).map(|(e, _)| e.to_string()).collect();
        let mut out: Vec<Value> = Vec::with_capacity(entries.len());
        let mut table: RouteTable = HashMap::new();
        let mut vetted = HashMap::new();
        let mut hidden: RouteTable = HashMap::new();
        let policy = &self.shared.policy;
        let pin_kind = match key {
            "uri" => PinKind::Resource,
            "uriTemplate" => PinKind::ResourceTemplate,
            _ if kind == Kind::Tool => PinKind::Tool,
            _ => PinKind::Prompt,
        };
        // Vetting (scan, schema compile, pins) of a big listing is CPU work: off the async worker.
        let big = entries.len() > 64;
        crate::blocking::heavy(big, || {
            for (exposed, i, orig, mut item) in entries {
                if dup.contains(&exposed) {
                    tracing::warn!(name = %exposed, upstream = %self.shared.specs[i].name, "name collision; withheld");
                    continue;
                }
                let read_only = policy.read_only(i, kind, &orig, Some(&item));
                if !policy.visible(p, i, kind, &orig, read_only) {
                    if kind != Kind::Resource && hidden.len() < 10_000 {
                        hidden.insert(format!("{cap}:{exposed}"), (i, orig, read_only));
                    }
                    continue;
                }
                let server = &self.shared.specs[i].name;
                match kind {
                    Kind::Tool => match self.shared.registry.vet(&self.shared.content, server, &orig, &item) {
                        Ok(v) => {
                            vetted.insert((i, orig.clone()), v);
                        }
                        Err(_) => continue, // logged by the registry
                    },
                    _ if !self.shared.registry.vet_other(pin_kind, server, &orig, &item) => continue,
                    _ => {}
                }
                if kind == Kind::Tool {
                    // Clients see the effective classification, not the upstream's claim.
                    if !item.get("annotations").is_some_and(Value::is_object) {
                        item["annotations"] = json!({});
                    }
                    item["annotations"]["readOnlyHint"] = read_only.into();
                    if !read_only {
                        item["annotations"]["destructiveHint"] = true.into();
                    }
                    // An MCP App's UI is read through Warden, as this upstream's resource.
                    crate::extensions::rename_ui_reference(&mut item, |u| self.shared.ns.uri(i, u));
                }
                item[key] = Value::String(exposed.clone());
                table.insert(exposed, (i, orig, read_only));
                out.push(item);
            }
            self.shared.registry.settle();
        });
        for i in offered.into_iter().filter(|&i| !policy.kills.killed(&self.shared.specs[i].name, None)) {
            out.push(super::link_tool::definition(&self.shared.specs[i].name));
        }
        {
            let mut r = self.routes.lock();
            if cap != "resources" {
                r.hidden.retain(|k, _| !k.starts_with(cap));
                r.hidden.extend(hidden);
            }
            match cap {
                "tools" => r.tools = table,
                "prompts" => r.prompts = table,
                _ if key == "uri" => r.resources = table,
                _ => {}
            }
            if cap == "tools" {
                r.unlinked = not_linked;
                r.vetted = vetted;
                r.refreshed = Some(Instant::now());
                r.kill_gen = policy.kills.generation();
            }
        }
        Ok(json!({ field: out }))
    }

    /// Resolve a tool or prompt name, refreshing the listing at most once a second on a miss:
    /// (upstream, its own name, effectively read-only).
    pub async fn resolve_name(&self, kind: &str, name: &str) -> Option<(usize, String, bool)> {
        let lookup = |r: &Routes| {
            if kind == "tools" {
                r.tools.get(name).cloned()
            } else {
                r.prompts.get(name).cloned()
            }
        };
        if let Some(hit) = lookup(&self.routes.lock()) {
            return Some(hit);
        }
        let stale = {
            let r = self.routes.lock();
            r.refreshed.is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                || r.kill_gen != self.shared.policy.kills.generation()
                || (kind == "prompts" && r.prompts.is_empty())
        };
        let left_out = self.routes.lock().unlinked.clone();
        let stale = stale || self.linked_since(&left_out).await;
        if stale {
            let _ = self
                .list(
                    if kind == "tools" { Method::ToolsList } else { Method::PromptsList },
                    &self.principal,
                    Unlinked::LeaveOut,
                )
                .await;
        }
        lookup(&self.routes.lock())
    }

    /// Whether this session's user may use one of `ups` (upstreams of users' own accounts) now.
    async fn linked_since(&self, ups: &[usize]) -> bool {
        for &i in ups {
            if self.ready(i).await {
                return true;
            }
        }
        false
    }

    /// Whether upstream `i` may be reached for this session's user without linking first: it is
    /// not of users' own accounts, or the user's link is ready, or the user cannot link at all
    /// (reaching it then says why). Starts no flow.
    async fn ready(&self, i: usize) -> bool {
        let link = self.shared.specs[i].for_tenant(self.principal.tenant.as_deref()).and_then(|s| s.user.clone());
        match link {
            Some(link) if UserLink::can_link(&self.principal) => link.ready(&self.principal).await,
            _ => true,
        }
    }

    /// A tool or prompt (`kind` `tools` or `prompts`) the policy hides from this session, as of
    /// the last listing: (upstream, its own name, effectively read-only).
    pub fn hidden(&self, kind: &str, name: &str) -> Option<(usize, String, bool)> {
        self.routes.lock().hidden.get(&format!("{kind}:{name}")).cloned()
    }

    /// The vetted definition of upstream `up`'s tool `name` (its own name), from the last listing.
    pub fn vetted(&self, up: usize, name: &str) -> Option<Arc<crate::registry::Vetted>> {
        self.routes.lock().vetted.get(&(up, name.to_string())).cloned()
    }

    /// Resolve a client-visible resource URI.
    pub async fn resolve_uri(&self, uri: &str) -> Option<(usize, String)> {
        if let Some(hit) = self.shared.ns.resolve_uri(uri) {
            return Some(hit);
        }
        if let Some((up, orig, _)) = self.routes.lock().resources.get(uri).cloned() {
            return Some((up, orig));
        }
        let unprefixed: Vec<usize> = self.shared.ns.unprefixed().collect();
        match unprefixed.as_slice() {
            [one] => Some((*one, uri.to_string())),
            [] => None,
            _ => {
                let _ = self.list(Method::ResourcesList, &self.principal, Unlinked::LeaveOut).await;
                self.routes.lock().resources.get(uri).map(|(up, orig, _)| (*up, orig.clone()))
            }
        }
    }
}

/// Reports beyond this many are counted, not listed (a hostile upstream can make thousands).
const MAX_REPORTS: usize = 100;

/// Report names claimed by more than one upstream (startup and on change).
pub fn report_collisions(names: &[(String, Vec<String>)]) -> Vec<String> {
    let mut c = namespace::collisions(names.iter().map(|(u, n)| (u.as_str(), n.clone())));
    cap_reports(&mut c, "collisions");
    for m in &c {
        tracing::error!(collision = %m, "federation name collision: both entries are withheld from clients");
    }
    c
}

/// Report tool names of different upstreams that look alike (`send_email` and `send-emai1`): a
/// server shadowing another's tool to catch calls meant for it. Both stay listed; operators
/// decide (a kill switch or a deny rule). One line per group of look-alikes.
pub fn report_confusables(tools: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = warden_policy::scan::confusable_groups(tools)
        .into_iter()
        .map(|g| {
            let shown: Vec<String> = g[1..].iter().take(4).map(|(s, t)| format!("{s}:{t}")).collect();
            let more = if g.len() > 5 { format!(" (and {} more)", g.len() - 5) } else { String::new() };
            format!("{}:{} looks like {}{more}", g[0].0, g[0].1, shown.join(", "))
        })
        .collect();
    cap_reports(&mut out, "look-alike groups");
    for m in &out {
        tracing::warn!(confusable = %m, "tool names of two upstreams look alike (shadowing?)");
    }
    out
}

fn cap_reports(v: &mut Vec<String>, what: &str) {
    if v.len() > MAX_REPORTS {
        let n = v.len() - MAX_REPORTS;
        v.truncate(MAX_REPORTS);
        v.push(format!("… and {n} more {what}"));
    }
}
