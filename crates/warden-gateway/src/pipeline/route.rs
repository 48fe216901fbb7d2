//! Stage 5, route: a request's method and exposed name or URI → where it goes — Warden itself,
//! every upstream, or one upstream's tool, prompt or resource by the upstream's own name (the
//! params rewritten to it). Resource URIs are canonicalized here, before any rule sees them. A
//! task's follow-up goes where its sealed id says (`task_handle.rs`), for the caller it names.

use super::method::Method;
use crate::error::GatewayError;
use crate::relay::session::RelaySession;
use serde_json::{json, Value};
use warden_policy::rules::Kind;
use warden_policy::Principal;

/// What a routed request reaches: upstream `up`'s tool, prompt or resource `name` (its own
/// name or canonical URI), and whether it counts as read-only (the effective classification).
#[derive(Debug, Clone)]
pub struct Target {
    pub up: usize,
    pub kind: Kind,
    pub name: String,
    pub read_only: bool,
}

/// Where a request goes.
pub enum Route {
    /// Answered by Warden itself.
    Local(Value),
    /// A listing merged from every upstream.
    FanOut,
    /// One upstream, with the request rewritten to the upstream's own names.
    One { target: Target, params: Value },
    /// Every upstream with a capability.
    Broadcast { cap: &'static str, params: Value },
    /// A follow-up of a task (`task.rs`): the params name the upstream's own task id; `task_id`
    /// is the one the client holds.
    Task { target: Target, task_id: String, params: Value },
}

fn str_param<'a>(p: &'a Value, key: &str) -> Result<&'a str, GatewayError> {
    p.get(key).and_then(Value::as_str).ok_or(GatewayError::InvalidParams("missing string parameter"))
}

/// The upstream's URI in canonical form: what the rules match and what the upstream gets
/// (`warden_policy::uri`), so that `../`, `%2e`, `//` or `file://localhost/` cannot slip past
/// a resource rule.
fn canonical_uri(uri: &str) -> Result<String, GatewayError> {
    warden_policy::uri::normalize(uri).map_err(|e| {
        tracing::info!(reason = %e, "resource URI refused");
        GatewayError::InvalidParams(
            "resource URI cannot be normalized (encoded separator, `..` above the root, or malformed)",
        )
    })
}

/// A name or URI no listing knows: unknown, unless it may be behind an upstream of the user's
/// own account not linked yet (then the link to open).
async fn unknown(s: &RelaySession, p: &Principal, kind: Kind, e: GatewayError) -> GatewayError {
    s.unlinked(p, kind).await.unwrap_or(e)
}

/// Decide where a request goes, rewriting exposed names to the upstream's own.
pub async fn route(
    s: &RelaySession,
    p: &Principal,
    method: Method,
    params: Option<Value>,
) -> Result<Route, GatewayError> {
    if method.listing().is_some() {
        return Ok(Route::FanOut);
    }
    let caller = p;
    let mut p = params.unwrap_or_else(|| json!({}));
    if !p.is_object() {
        return Err(GatewayError::InvalidParams("params must be an object"));
    }
    match method {
        Method::TasksGet | Method::TasksUpdate | Method::TasksCancel => {
            // Only a client that took the extension has tasks.
            if !warden_protocol::modern::declares_tasks(&s.client_caps) {
                let ext = warden_protocol::modern::TASKS_EXTENSION;
                return Err(GatewayError::MissingCapability {
                    what: "the tasks extension",
                    required: json!({"extensions": {ext: {}}}),
                });
            }
            let task_id = str_param(&p, "taskId")?.to_string();
            // Another caller's task, a forged or an expired id: all unknown alike.
            let unknown = || GatewayError::InvalidParams("unknown task");
            let h =
                s.shared.tasks.open(&task_id, &caller.binding_key(), crate::clock::now_secs()).ok_or_else(unknown)?;
            let up = s.shared.specs.iter().position(|x| x.name == h.server).ok_or_else(unknown)?;
            p["taskId"] = h.task.into();
            let target = Target { up, kind: Kind::Tool, name: h.tool, read_only: h.read_only };
            Ok(Route::Task { target, task_id, params: p })
        }
        Method::Ping => Ok(Route::Local(json!({}))),
        Method::LoggingSetLevel => Ok(Route::Broadcast { cap: "logging", params: p }),
        Method::ToolsCall | Method::PromptsGet => {
            let kind = if method == Method::ToolsCall { "tools" } else { "prompts" };
            let name = str_param(&p, "name")?.to_string();
            // The stand-in for an upstream this user has not linked (a name no upstream's tool
            // may take): Warden answers.
            if kind == "tools" {
                let ask = || super::link::may_ask(s, Some(Method::ToolsCall));
                if let Some(answer) = s.link_tool(caller, &name, ask).await {
                    return answer.map(Route::Local);
                }
            }
            let Some((up, orig, ro)) = s.resolve_name(kind, &name).await else {
                return Err(if kind == "tools" {
                    unknown(s, caller, Kind::Tool, GatewayError::UnknownTool).await
                } else {
                    unknown(s, caller, Kind::Prompt, GatewayError::UnknownPrompt).await
                });
            };
            p["name"] = orig.clone().into();
            let kind = if kind == "tools" { Kind::Tool } else { Kind::Prompt };
            Ok(Route::One { params: p, target: Target { up, kind, name: orig, read_only: ro } })
        }
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            let uri = str_param(&p, "uri")?.to_string();
            let Some((up, listed)) = s.resolve_uri(&uri).await else {
                return Err(unknown(s, caller, Kind::Resource, GatewayError::UnknownResource).await);
            };
            let orig = canonical_uri(&listed)?;
            // A resource withheld from listings because it changed since pinned is not read by URI
            // either (it looks unknown, like any refused target).
            let registry = &s.shared.registry;
            let server = &s.shared.specs[up].name;
            if [&listed, &orig].iter().any(|u| registry.is_pending(crate::registry::PinKind::Resource, server, u)) {
                return Err(GatewayError::UnknownResource);
            }
            p["uri"] = orig.clone().into();
            Ok(Route::One { params: p, target: Target { up, kind: Kind::Resource, name: orig, read_only: true } })
        }
        Method::CompletionComplete => {
            let r = p.get("ref").cloned().ok_or(GatewayError::InvalidParams("missing ref"))?;
            let (up, field, orig) = match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let (up, o, _) =
                        s.resolve_name("prompts", str_param(&r, "name")?).await.ok_or(GatewayError::UnknownPrompt)?;
                    (up, "name", o)
                }
                Some("ref/resource") => {
                    let (up, o) = s.resolve_uri(str_param(&r, "uri")?).await.ok_or(GatewayError::UnknownResource)?;
                    (up, "uri", canonical_uri(&o)?)
                }
                _ => return Err(GatewayError::InvalidParams("unknown completion ref type")),
            };
            p["ref"][field] = orig.clone().into();
            let kind = if field == "name" { Kind::Prompt } else { Kind::Resource };
            Ok(Route::One { params: p, target: Target { up, kind, name: orig, read_only: true } })
        }
        // Listings returned above.
        Method::ToolsList | Method::PromptsList | Method::ResourcesList | Method::ResourceTemplatesList => {
            Ok(Route::FanOut)
        }
    }
}
