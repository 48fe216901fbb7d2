//! Protocol extensions (the 2026-07-28 `extensions` capability, on both sides): which Warden
//! relays and how. It understands MCP Apps (`io.modelcontextprotocol/ui`): a tool's
//! `_meta.ui.resourceUri` names a `ui://` resource of the same server, which Warden renames into
//! the upstream's namespace, so the host reads it through Warden — routed, authorized like any
//! resource, pinned and put through the output stages. And tasks
//! (`io.modelcontextprotocol/tasks`): a tool call's task handle is sealed to its caller and its
//! follow-ups routed and vetted (`pipeline/task.rs`). Other extensions are relayed only when
//! the operator lists them (`[federation] extensions`).
//!
//! Defends against: an upstream announcing an extension whose methods Warden does not route
//! (the client would send them and get -32601, or an upstream would act on a client
//! capability Warden cannot honour), and a UI reference that points the host around Warden.
//! Does not defend against: what an app's HTML does once the host renders it (the host's
//! sandbox and the resource's `_meta.ui.csp` decide); the methods of an extension an operator
//! allows are still routed only if they are ones Warden serves.

use serde_json::{Map, Value};

/// MCP Apps.
pub const UI: &str = "io.modelcontextprotocol/ui";
/// Tasks (SEP-2663): routed and bound to their caller by `pipeline/task.rs`.
pub use warden_protocol::modern::TASKS_EXTENSION as TASKS;

/// The extensions Warden relays.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    allowed: Vec<String>,
}

impl Extensions {
    pub fn new(allowed: &[String]) -> Extensions {
        Extensions { allowed: allowed.to_vec() }
    }

    pub fn relayed(&self, id: &str) -> bool {
        id == UI || id == TASKS || self.allowed.iter().any(|a| a == id)
    }

    /// `caps` (a capabilities object) with only the relayed extensions left.
    pub fn filter(&self, caps: &mut Value) {
        let Some(m) = caps.as_object_mut() else { return };
        let keep: Option<Map<String, Value>> = m
            .get("extensions")
            .and_then(Value::as_object)
            .map(|e| e.iter().filter(|(k, _)| self.relayed(k)).map(|(k, v)| (k.clone(), v.clone())).collect());
        match keep {
            Some(e) if !e.is_empty() => {
                m.insert("extensions".into(), Value::Object(e));
            }
            _ => {
                m.remove("extensions");
            }
        }
    }

    /// The relayed extensions of several servers' capabilities, merged (the first server's
    /// settings for an extension win).
    pub fn merge<'a>(&self, caps: impl Iterator<Item = &'a Value>) -> Option<Value> {
        let mut out = Map::new();
        for c in caps {
            for (k, v) in c.get("extensions").and_then(Value::as_object).into_iter().flatten() {
                if self.relayed(k) && !out.contains_key(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }
}

/// A listed tool's MCP Apps reference renamed as the client sees the upstream's resources
/// (`uri` maps an upstream URI to its exposed form). A reference that is not a `ui://` URI
/// is dropped: the host would fetch it from elsewhere than this server.
pub fn rename_ui_reference(tool: &mut Value, uri: impl Fn(&str) -> String) {
    let Some(ui) = tool.pointer_mut("/_meta/ui").and_then(Value::as_object_mut) else { return };
    match ui.get("resourceUri").and_then(Value::as_str) {
        Some(u) if u.starts_with("ui://") => {
            let exposed = uri(u);
            ui.insert("resourceUri".into(), exposed.into());
        }
        Some(_) | None => {
            ui.remove("resourceUri");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_relayed_extensions_pass() {
        let x = Extensions::new(&["com.example/ok".into()]);
        let mut caps = json!({"sampling": {}, "extensions": {UI: {"mimeTypes": ["text/html;profile=mcp-app"]},
                              "com.example/ok": {}, "com.example/other": {}}});
        x.filter(&mut caps);
        assert_eq!(caps["extensions"], json!({UI: {"mimeTypes": ["text/html;profile=mcp-app"]}, "com.example/ok": {}}));
        let mut only_unknown = json!({"extensions": {"com.example/other": {}}});
        Extensions::default().filter(&mut only_unknown);
        assert_eq!(only_unknown, json!({}));
        let a = json!({"extensions": {UI: {"v": 1}}});
        let b = json!({"extensions": {UI: {"v": 2}, "io.modelcontextprotocol/tasks": {}}});
        assert_eq!(
            Extensions::default().merge([&a, &b].into_iter()),
            Some(json!({UI: {"v": 1}, "io.modelcontextprotocol/tasks": {}}))
        );
        assert_eq!(Extensions::default().merge([&json!({})].into_iter()), None);
    }

    #[test]
    fn ui_references_point_through_warden() {
        let mut t = json!({"name": "chart", "_meta": {"ui": {"resourceUri": "ui://charts/bar", "csp": {}}}});
        rename_ui_reference(&mut t, |u| format!("warden://up/{u}"));
        assert_eq!(t["_meta"]["ui"], json!({"resourceUri": "warden://up/ui://charts/bar", "csp": {}}));
        let mut elsewhere = json!({"_meta": {"ui": {"resourceUri": "https://evil.example/app.html"}}});
        rename_ui_reference(&mut elsewhere, |u| u.to_string());
        assert_eq!(elsewhere["_meta"]["ui"], json!({}));
    }
}
