//! Definitions in the admin API: what each upstream offers as Warden has pinned it, with its
//! effective classification, the rules that name it, what the poisoning scan finds in it (and
//! the text it matched) and the look-alike names across upstreams (`GET /admin/tools`); and the
//! definitions that changed since they were pinned (`GET /admin/pins`), approved
//! (`POST /admin/pins/approve`) or refused (`POST /admin/pins/refuse`).
//!
//! Refusing a changed tool switches the tool off (a kill switch naming the refused digest, so
//! every replica refuses it and the switch says who and why); any refused definition stays
//! withheld, as it was while waiting, and the refusal is an audit record. A definition that
//! changes again waits again. The switch stays off until an operator switches the tool on,
//! even if the upstream goes back to the pinned definition.
//!
//! Both the pinned and the changed definition are scanned (`findings`, `pending_findings`), so
//! the operator decides on what the scan finds in the new one.
//!
//! Defends against: an operator approving what they did not review (approval and refusal name
//! the digest shown; a definition changed since is 409); a listing too large to answer (at most
//! 2,000 definitions, then `truncated`, and 8 MiB of their text, then listed without it; the
//! scan runs off the async threads).
//! Besides the pins, the tools and prompts each upstream lists to Warden's own control
//! connection are shown, so that what no client was ever shown (no rule lets anyone see it) is
//! there too, as `unpinned`.
//! Does not defend against: resources and templates no client has listed (Warden's own
//! connection lists tools and prompts only); a definition's scan here is the tool scan, not the
//! session-time one.

use super::caller::{operator, short, Presented};
use super::{admin_event, reply, store_error, AdminState};
use crate::killswitch::Kill;
use crate::registry::{PendingChange, Pin, PinKind};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use warden_policy::rules::{Kind, Target};
use warden_policy::scan;

type S = Arc<AdminState>;

/// Most definitions one answer lists, and the most bytes of their text it carries.
const MAX_LISTED: usize = 2000;
const MAX_DEFINITION_BYTES: usize = 8 << 20;

/// `GET /admin/tools`.
pub(super) async fn inventory(State(s): State<S>, p: Presented) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    shared_pins(&s).await;
    let current = s.current.load_full();
    let pinned = s.registry.pinned(MAX_LISTED + 1);
    let listed = s.metrics.control.as_ref().map(|c| c.load().definitions()).unwrap_or_default();
    let pending = s.registry.pending();
    let kills = s.kills.list();
    let look_alikes = s.metrics.control.as_ref().map(|c| c.load().confusables()).unwrap_or_default();
    let pinning = format!("{:?}", s.registry.pinning()).to_lowercase();
    let described = tokio::task::spawn_blocking(move || {
        // Pinned definitions, then what the upstreams list to Warden itself that no client
        // was shown (no rule lets anyone see it) or that is not pinned (pinning off).
        let mut all: std::collections::BTreeMap<(String, PinKind, String), (Pin, Option<String>)> =
            pinned.into_iter().map(|(kind, server, name, pin)| ((server, kind, name), (pin, None))).collect();
        for (server, kind, def) in listed {
            let kind = if kind == "tool" { PinKind::Tool } else { PinKind::Prompt };
            let Some(name) = def.get("name").and_then(Value::as_str).map(str::to_string) else { continue };
            let digest = crate::registry::pin_digest(kind, &def);
            match all.get_mut(&(server.clone(), kind, name.clone())) {
                Some((pin, now)) if pin.digest != digest => *now = Some(digest),
                Some(_) => {}
                None => {
                    all.insert((server, kind, name), (Pin { digest: String::new(), definition: def }, Some(digest)));
                }
            }
        }
        let truncated = all.len() > MAX_LISTED;
        let mut bytes = 0;
        let definitions = all
            .into_iter()
            .take(MAX_LISTED)
            .map(|((server, kind, name), (pin, now))| {
                let change = pending.iter().find(|c| c.kind == kind && c.server == server && c.name == name);
                let mut d = describe(&current, kind, &server, &name, &pin, change, now.as_deref(), &kills);
                // An upstream's definitions may be large: past the answer's budget, each is
                // listed without its text (read it with `warden pin diff`).
                bytes += d["definition"].to_string().len();
                if bytes > MAX_DEFINITION_BYTES {
                    d["definition"] = Value::Null;
                    d["definition_omitted"] = true.into();
                }
                d
            })
            .collect::<Vec<Value>>();
        (definitions, truncated)
    })
    .await;
    match described {
        Ok((definitions, truncated)) => reply(
            StatusCode::OK,
            json!({"pinning": pinning, "definitions": definitions, "look_alikes": look_alikes, "truncated": truncated}),
        ),
        Err(e) => {
            tracing::error!(error = %e, "admin: describing the definitions failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "the definitions could not be described"}))
        }
    }
}

/// One definition, as the console shows it: `pin` with an empty digest is one the upstream
/// lists to Warden that is not pinned; `now`, the digest of what the upstream lists to Warden
/// itself when it differs from the pin.
#[allow(clippy::too_many_arguments)]
fn describe(
    shared: &crate::relay::Shared,
    kind: PinKind,
    server: &str,
    name: &str,
    pin: &Pin,
    change: Option<&PendingChange>,
    now: Option<&str>,
    kills: &[Kill],
) -> Value {
    let def = &pin.definition;
    let up = shared.specs.iter().position(|u| u.name == server);
    let policy = &shared.policy;
    let rule_kind = match kind {
        PinKind::Tool => Some(Kind::Tool),
        PinKind::Prompt => Some(Kind::Prompt),
        PinKind::Resource | PinKind::ResourceTemplate => Some(Kind::Resource),
        PinKind::Instructions => None,
    };
    let state = match (change, pin.digest.is_empty()) {
        (Some(_), _) => "changed",
        (None, true) => "unpinned",
        (None, false) => "pinned",
    };
    let mut out = json!({
        "kind": kind, "server": server, "name": name, "digest": now.filter(|_| state == "unpinned").unwrap_or(&pin.digest),
        "definition": def, "state": state, "findings": findings(kind, def),
    });
    if let Some(c) = change {
        out["pending_digest"] = c.seen.digest.clone().into();
        // `findings` are the pinned definition's; these, the changed one's (withheld).
        out["pending_findings"] = json!(findings(kind, &c.seen.definition));
    } else if let Some(d) = now.filter(|_| state == "pinned") {
        // The upstream lists something else to Warden; the next client listing withholds it.
        out["upstream_digest"] = d.into();
    }
    let (Some(up), Some(rk)) = (up, rule_kind) else {
        // An upstream no longer configured, or instructions: no rules or classes apply.
        return out;
    };
    let read_only = policy.read_only(up, rk, name, Some(def));
    if kind == PinKind::Tool {
        let open_world = || def.pointer("/annotations/openWorldHint").and_then(Value::as_bool) != Some(false);
        // For the rules, a tool is read-only or not (destructive); for session taint, it may
        // also bring in untrusted content, or be a sink a tainted session may not use freely.
        let mut classes = vec![if read_only { "read_only" } else { "destructive" }];
        if policy.untrusted_source(up, name, read_only, open_world) {
            classes.push("untrusted_source");
        }
        if policy.sink(up, name, read_only) {
            classes.push("sink");
        }
        out["classes"] = json!(classes);
        out["classified_by"] = if policy.classified(up, name) {
            "operator"
        } else if policy.trusts_annotations(up) {
            "annotations"
        } else {
            "default"
        }
        .into();
        if let Some(k) = kills.iter().find(|k| k.server == server && k.tool.as_deref().is_none_or(|t| t == name)) {
            out["switched_off"] = json!({"by": k.by, "reason": k.reason, "at": k.at});
        }
    }
    let target = Target { kind: rk, server, name, read_only };
    let rules: Vec<Value> = policy
        .rules()
        .naming(&target)
        .into_iter()
        .map(|(i, r)| {
            json!({
                "id": r.id, "effect": if r.deny { "deny" } else { "allow" },
                "scopes": r.scopes, "roles": r.roles, "tenants": r.tenants,
                "conditional": r.when.is_some(), "read_only_only": r.read_only,
                "approval": policy.approval_of(i).map(|a| format!("{a:?}").to_lowercase()),
            })
        })
        .collect();
    out["rules"] = rules.into();
    out
}

/// What the poisoning scan finds in a definition (instructions are read as a description).
fn findings(kind: PinKind, def: &Value) -> Vec<scan::ToolFinding> {
    match kind {
        PinKind::Tool => scan::scan_tool(def),
        PinKind::Instructions => {
            let text = def.get("instructions").cloned().unwrap_or_default();
            let mut f = scan::scan_definition(&json!({ "description": text }));
            for x in &mut f {
                x.place = x.place.replacen("description", "instructions", 1);
            }
            f
        }
        _ => scan::scan_definition(def),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRefusal {
    server: String,
    kind: Option<String>,
    name: String,
    /// The digest of the changed definition the operator reviewed.
    digest: String,
    reason: Option<String>,
    by: Option<String>,
}

/// `POST /admin/pins/refuse` `{server, kind?, name, digest, reason?, by?}`.
pub(super) async fn refuse_pin(State(s): State<S>, cred: Presented, body: axum::body::Bytes) -> Response<Body> {
    let c = match operator(&s, &cred).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bad =
        || reply(StatusCode::BAD_REQUEST, json!({"error": "expected {server, kind?, name, digest, reason?, by?}"}));
    let Ok(p) = serde_json::from_slice::<PinRefusal>(&body) else { return bad() };
    let Some(kind) = p.kind.as_deref().map_or(Some(PinKind::Tool), PinKind::parse) else { return bad() };
    // A tool is switched off by name, and kill switches name tools of at most 128 characters.
    let longest = if kind == PinKind::Tool { 128 } else { 2048 };
    if p.reason.as_deref().is_some_and(|r| !short(r, 400)) || !short(&p.name, longest) {
        return bad();
    }
    shared_pins(&s).await;
    let pending = s.registry.pending();
    let Some(change) = pending.iter().find(|x| x.server == p.server && x.kind == kind && x.name == p.name) else {
        return reply(StatusCode::NOT_FOUND, json!({"error": "no pending change for that server, kind and name"}));
    };
    if change.seen.digest != p.digest {
        return reply(
            StatusCode::CONFLICT,
            json!({"error": "the pending definition changed since it was reviewed; review it again", "pending_digest": change.seen.digest}),
        );
    }
    let by = c.name(p.by);
    let reason = p.reason.unwrap_or_default();
    let mut switched_off = false;
    if kind == PinKind::Tool {
        let short_digest: String = p.digest.chars().take(12).collect();
        let why = format!(
            "changed definition {short_digest}… refused{}",
            if reason.is_empty() { String::new() } else { format!(": {reason}") }
        );
        let k = Kill {
            server: p.server.clone(),
            tool: Some(p.name.clone()),
            reason: why,
            by: by.clone(),
            at: crate::clock::now_secs(),
            cancel_in_flight: false,
        };
        if let Err(e) = s.kills.kill(k).await {
            return store_error(e);
        }
        switched_off = true;
    }
    tracing::warn!(server = %p.server, kind = kind.as_str(), name = %p.name, by = %by, "changed definition refused through the admin API");
    let args = json!({"kind": kind, "digest": p.digest, "reason": reason, "switched_off": switched_off});
    let recorded = admin_event(&s, "pin", "rejected", &by, &p.server, Some(&p.name), args).await;
    reply(
        StatusCode::OK,
        json!({"refused": {"server": p.server, "kind": kind, "name": p.name, "digest": p.digest, "by": by},
               "switched_off": switched_off, "recorded": recorded}),
    )
}

/// With a shared store: see the pins and waiting changes of every replica, publish this one's.
async fn shared_pins(s: &S) {
    if let Err(e) = s.registry.sync().await {
        tracing::warn!(error = %e, "definition pins: the store is unreachable; this replica's own pins are shown");
    }
}

pub(super) async fn pins(State(s): State<S>, p: Presented) -> Response<Body> {
    match operator(&s, &p).await {
        Ok(_) => {
            shared_pins(&s).await;
            // What the scan finds in each new definition, beside the diff: the one to decide on.
            let pending: Vec<Value> = s
                .registry
                .pending()
                .into_iter()
                .map(|c| {
                    let found = findings(c.kind, &c.seen.definition);
                    let mut v = json!(c);
                    v["findings"] = json!(found);
                    v
                })
                .collect();
            reply(StatusCode::OK, json!({"pending": pending}))
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinApproval {
    server: String,
    /// `tool` (default), `prompt`, `resource`, `resource_template` or `instructions`.
    kind: Option<String>,
    /// The name (a resource's URI; `instructions`); `tool` is the same, for tools.
    name: Option<String>,
    tool: Option<String>,
    /// The digest of the definition the operator reviewed (`seen.digest` in `GET /admin/pins`).
    digest: String,
    by: Option<String>,
}

pub(super) async fn approve_pin(State(s): State<S>, cred: Presented, body: axum::body::Bytes) -> Response<Body> {
    let c = match operator(&s, &cred).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bad =
        || reply(StatusCode::BAD_REQUEST, json!({"error": "expected {server, kind?, name (or tool), digest, by?}"}));
    let Ok(p) = serde_json::from_slice::<PinApproval>(&body) else { return bad() };
    let Some(kind) = p.kind.as_deref().map_or(Some(PinKind::Tool), PinKind::parse) else { return bad() };
    let Some(name) = p.name.or(p.tool) else { return bad() };
    let by = c.name(p.by);
    shared_pins(&s).await;
    let approved = s.registry.approve(&p.server, kind, &name, &p.digest);
    if approved.is_ok() {
        shared_pins(&s).await;
    }
    match approved {
        Err(Some(pending)) => {
            tracing::warn!(server = ?p.server, kind = kind.as_str(), name = ?name, by = ?by, "pin approval refused: the pending definition is not the one reviewed");
            admin_event(
                &s,
                "pin",
                "refused",
                &by,
                &p.server,
                Some(&name),
                json!({"kind": kind, "digest": p.digest, "pending": pending}),
            )
            .await;
            reply(
                StatusCode::CONFLICT,
                json!({"error": "the pending definition changed since it was reviewed; review it again", "pending_digest": pending}),
            )
        }
        Ok(change) => {
            tracing::warn!(server = %p.server, kind = kind.as_str(), name = %name, by = %by, "pin change approved through the admin API");
            let recorded = admin_event(
                &s,
                "pin",
                "approved",
                &by,
                &p.server,
                Some(&name),
                json!({"kind": kind, "digest": change.seen.digest}),
            )
            .await;
            let mut approved =
                json!({"server": p.server, "kind": kind, "name": name, "digest": change.seen.digest, "by": by});
            if kind == PinKind::Tool {
                approved["tool"] = name.clone().into();
            }
            reply(StatusCode::OK, json!({"approved": approved, "recorded": recorded}))
        }
        Err(None) => reply(StatusCode::NOT_FOUND, json!({"error": "no pending change for that server, kind and name"})),
    }
}
