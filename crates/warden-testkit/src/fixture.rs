//! The fixture server. Served over stdio or Streamable HTTP through Warden's own transports.

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden_gateway::rpc::Peer;
use warden_gateway::server::{Initialized, Service, Session};
use warden_protocol::jsonrpc::{self, ErrorObject};
use warden_protocol::version;

pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
pub const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

pub struct Fixture {
    /// Whether misbehaving tools may act (stdio: `garbage` writes to this process's stdout).
    pub stdio: bool,
}

struct FixtureSession {
    peer: Peer,
    stdio: bool,
    /// What the client declared in `initialize` (a 2025 server asks only for what it may).
    client_caps: Value,
}

impl Service for Fixture {
    fn initialize(
        &self,
        params: Value,
        peer: Peer,
        _principal: Arc<warden_policy::Principal>,
        _origin: warden_gateway::server::Origin,
    ) -> BoxFuture<'static, Result<Initialized, ErrorObject>> {
        let stdio = self.stdio;
        async move {
            let v = version::negotiate(params.get("protocolVersion").and_then(Value::as_str));
            let client_caps = params.get("capabilities").cloned().unwrap_or_else(|| json!({}));
            let session: Arc<dyn Session> = Arc::new(FixtureSession { peer, stdio, client_caps });
            Ok(Initialized {
                session,
                result: json!({
                    "protocolVersion": v,
                    "capabilities": {
                        "tools": {"listChanged": true},
                        "resources": {"subscribe": true, "listChanged": true},
                        "prompts": {"listChanged": true},
                        "logging": {},
                        "completions": {},
                        "extensions": {crate::tasks::TASKS: {}}
                    },
                    "serverInfo": {"name": "warden-fixture", "version": env!("CARGO_PKG_VERSION")},
                    // Hostile-upstream tests give other instructions.
                    "instructions": instructions()
                }),
            })
        }
        .boxed()
    }
}

/// Ask the user a name (elicitation, a one-field form): the name, or the error to answer with.
async fn ask_name(peer: &Peer, message: &str) -> Result<String, ErrorObject> {
    ask_name_as(peer, message, None).await
}

/// [`ask_name`] under a question key of the server's own (what a 2026 server names each of
/// its `inputRequests`; Warden's endpoint takes it from the question's params).
async fn ask_name_as(peer: &Peer, message: &str, key: Option<&str>) -> Result<String, ErrorObject> {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
    let mut params = Some(json!({"mode": "form", "message": message, "requestedSchema": schema}));
    if let Some(k) = key {
        warden_protocol::modern::put_input_key(&mut params, k);
    }
    let r = peer.request("elicitation/create", params).await?;
    Ok(r.pointer("/content/name").and_then(Value::as_str).unwrap_or("(no name)").to_string())
}

/// Ask the client's model for a greeting (sampling).
async fn ask_model(peer: &Peer) -> Result<String, ErrorObject> {
    let params =
        json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Say hello"}}], "maxTokens": 50});
    let r = peer.request("sampling/createMessage", Some(params)).await?;
    Ok(r.pointer("/content/text").and_then(Value::as_str).unwrap_or("").to_string())
}

/// Ask the client for its roots.
async fn ask_roots(peer: &Peer) -> Result<String, ErrorObject> {
    let r = peer.request("roots/list", None).await?;
    Ok(r.get("roots").cloned().unwrap_or(json!([])).to_string())
}

fn text(t: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": t.into()}]})
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

fn tools() -> Value {
    let mut all = basic_tools();
    if let Some(list) = all["tools"].as_array_mut() {
        list.extend(crate::tasks::tools());
    }
    all
}

fn basic_tools() -> Value {
    let t = |name: &str, desc: &str, schema: Value| json!({"name": name, "description": desc, "inputSchema": schema});
    let str_arg = |k: &str, d: &str| json!({"type": "object", "properties": {k: {"type": "string", "description": d}}, "required": [k]});
    json!({"tools": [
        t("test_simple_text", "Tests simple text content response", empty_schema()),
        t("test_image_content", "Tests image content response", empty_schema()),
        t("test_audio_content", "Tests audio content response", empty_schema()),
        t("test_embedded_resource", "Tests embedded resource content response", empty_schema()),
        t("test_multiple_content_types", "Tests response with multiple content types (text, image, resource)", empty_schema()),
        t("test_tool_with_logging", "Tests tool that emits log messages during execution", empty_schema()),
        t("test_tool_with_progress", "Tests tool that reports progress notifications", empty_schema()),
        t("test_error_handling", "Tests error response handling", empty_schema()),
        t("test_reconnection", "Tests SSE stream disconnection and client reconnection", empty_schema()),
        t("test_sampling", "Tests server-initiated sampling (LLM completion request)", str_arg("prompt", "The prompt to send to the LLM")),
        t("test_elicitation", "Tests server-initiated elicitation (user input request)", str_arg("message", "The message to show the user")),
        t("test_elicitation_sep1034_defaults", "Tests elicitation with default values per SEP-1034", empty_schema()),
        t("test_elicitation_sep1330_enums", "Tests elicitation with enum schema improvements per SEP-1330", empty_schema()),
        t("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)", json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                                  "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                           "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                           "phone": {"type": "string"}, "email": {"type": "string"}},
            // SEP-2106: composition, conditional and reference keywords must survive listing.
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false
        })),
        t("echo", "Echoes its text argument", str_arg("text", "Text to echo")),
        // 2026-07-28 (SEP-2243): arguments an HTTP client mirrors into `Mcp-Param-*` headers.
        t("test_header_param", "Answers with its region and count", json!({"type": "object", "properties": {
            "region": {"type": "string", "description": "Where to run", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"}}, "required": ["region"]})),
        t("trace_context", "Answers with the W3C traceparent the call carried in _meta", empty_schema()),
        t("slow", "Answers after `ms` milliseconds", json!({"type": "object", "properties": {"ms": {"type": "integer"}}})),
        t("hang", "Never answers (for cancellation and timeout tests)", empty_schema()),
        t("crash", "Exits the server process mid-call", empty_schema()),
        t("garbage", "Writes non-JSON to stdout, then answers", empty_schema()),
        t("roots", "Asks the client for its roots", empty_schema()),
        // The 2026-07-28 conformance suite's diagnostic tools, as a 2025 server does them (what
        // Warden makes of each for a stateless client is what the suite checks).
        t("test_missing_capability", "Test tool requiring sampling", empty_schema()),
        t("test_streaming_elicitation", "Diagnostic tool validating response progress streams", empty_schema()),
        t("test_logging_tool", "Diagnostic logging validator tool", empty_schema()),
        t("test_trigger_tool_change", "Announces that the tool list changed", empty_schema()),
        t("test_trigger_prompt_change", "Announces that the prompt list changed", empty_schema()),
        // … and its multi round-trip tools, as a 2025 server asks (Warden turns each question
        // into `input_required` for a stateless client).
        t("test_input_required_result_elicitation", "Asks the user for their name", empty_schema()),
        t("test_input_required_result_sampling", "Asks the client's model for a greeting", empty_schema()),
        t("test_input_required_result_list_roots", "Asks the client for its roots", empty_schema()),
        t("test_input_required_result_request_state", "Asks the user for their name (state kept by Warden)", empty_schema()),
        t("test_input_required_result_multiple_inputs", "Asks a name, a greeting and the roots at once", empty_schema()),
        t("test_input_required_result_multi_round", "Asks the user twice, one question after the other", empty_schema()),
        t("test_input_required_result_tampered_state", "Asks the user for their name", empty_schema()),
        t("test_input_required_result_capabilities", "Asks the user's name and the model's greeting, each only if the client can answer", empty_schema()),
        t("whoami", "Reports the credential the server was started with (FIXTURE_IDENTITY)", empty_schema()),
        t("fail", "Answers with a JSON-RPC error carrying `message`", str_arg("message", "The error message")),
        json!({"name": "rows", "description": "Answers with `value` as its structured content (and its text)",
               "inputSchema": {"type": "object", "properties": {"value": {}}},
               "outputSchema": {"type": "object", "properties": {"rows": {"type": "array"}}, "required": ["rows"],
                                "additionalProperties": false}}),
    ]})
}

/// The overrides in the file named by `FIXTURE_DESCRIPTIONS` (a JSON object: name →
/// description, or name → fields to replace), read at every listing: tests change a definition
/// while the server runs (a rug pull) or poison one.
fn overrides() -> serde_json::Map<String, Value> {
    std::env::var("FIXTURE_DESCRIPTIONS")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// `listing[field]` with each item named in `over` (by its `name`) changed.
fn apply_overrides(mut listing: Value, field: &str, over: &serde_json::Map<String, Value>) -> Value {
    if let Some(items) = listing[field].as_array_mut() {
        for t in items {
            match t["name"].as_str().and_then(|n| over.get(n)).cloned() {
                // An object replaces fields (a renamed tool: a look-alike of another server's).
                Some(Value::Object(fields)) => fields.into_iter().for_each(|(k, v)| t[k] = v),
                Some(d) => t["description"] = d,
                None => {}
            }
        }
    }
    listing
}

/// The tool listing, with the overrides of `FIXTURE_DESCRIPTIONS`.
fn listed_tools() -> Value {
    apply_overrides(tools(), "tools", &overrides())
}

/// The instructions: the file named by `FIXTURE_INSTRUCTIONS_FILE` (read at each
/// `initialize`), else `FIXTURE_INSTRUCTIONS`, else a plain sentence.
fn instructions() -> String {
    std::env::var("FIXTURE_INSTRUCTIONS_FILE")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .or_else(|| std::env::var("FIXTURE_INSTRUCTIONS").ok())
        .unwrap_or_else(|| "Fixture server for Warden's tests.".into())
}

fn resources() -> Value {
    json!({"resources": [
        {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource", "description": "A static text resource for testing", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "title": "Static Binary Resource", "description": "A static binary resource (image) for testing", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched Resource", "description": "A resource that can be subscribed to", "mimeType": "text/plain"}
    ]})
}

fn prompts() -> Value {
    json!({"prompts": [
        {"name": "test_simple_prompt", "title": "Simple Test Prompt", "description": "A simple prompt without arguments"},
        {"name": "test_input_required_result_prompt", "description": "A prompt that asks who the greeting is for"},
        {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments", "description": "A prompt with required arguments",
         "arguments": [{"name": "arg1", "description": "First test argument", "required": true}, {"name": "arg2", "description": "Second test argument", "required": true}]},
        {"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource", "description": "A prompt that includes an embedded resource",
         "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
        {"name": "test_prompt_with_image", "title": "Prompt With Image", "description": "A prompt that includes image content"}
    ]})
}

fn invalid(msg: &str) -> ErrorObject {
    ErrorObject::new(jsonrpc::INVALID_PARAMS, msg)
}

impl FixtureSession {
    fn log(&self, peer: &Peer, data: &str) {
        peer.notify("notifications/message", Some(json!({"level": "info", "logger": "warden-fixture", "data": data})));
    }

    async fn elicit(&self, peer: &Peer, params: Value, label: &str) -> Value {
        match peer.request("elicitation/create", Some(params)).await {
            Ok(r) => {
                // What reached the server, for tests (the client sees the result redacted anyway).
                eprintln!("fixture received elicitation answer: {}", r.get("content").cloned().unwrap_or(json!({})));
                text(format!(
                    "{label}: action={}, content={}",
                    r.get("action").and_then(Value::as_str).unwrap_or(""),
                    r.get("content").cloned().unwrap_or(json!({}))
                ))
            }
            Err(e) => text(format!("Elicitation not supported or error: {}", e.message)),
        }
    }

    async fn call_tool(&self, name: &str, args: Value, meta: Option<Value>, peer: Peer) -> Result<Value, ErrorObject> {
        if let Some(r) = crate::tasks::call(name, &args, meta.as_ref(), &self.client_caps).await {
            return r;
        }
        Ok(match name {
            "test_simple_text" => text("This is a simple text response for testing."),
            "test_image_content" => {
                json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]})
            }
            "test_audio_content" => {
                json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]})
            }
            "test_embedded_resource" => {
                json!({"content": [{"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}}]})
            }
            "test_multiple_content_types" => json!({"content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ]}),
            "test_tool_with_logging" => {
                for (i, m) in
                    ["Tool execution started", "Tool processing data", "Tool execution completed"].iter().enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    self.log(&peer, m);
                }
                text("Tool with logging executed successfully")
            }
            "test_tool_with_progress" => {
                let token = meta.and_then(|m| m.get("progressToken").cloned()).unwrap_or(json!(0));
                for (i, p) in [0, 50, 100].iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    peer.notify("notifications/progress", Some(json!({"progressToken": token, "progress": p, "total": 100, "message": format!("Completed step {p} of 100")})));
                }
                text(match &token {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            "test_error_handling" => {
                json!({"isError": true, "content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}]})
            }
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                text("Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.")
            }
            "test_sampling" => {
                let prompt = args.get("prompt").and_then(Value::as_str).ok_or_else(|| invalid("prompt is required"))?;
                let params = json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100});
                match peer.request("sampling/createMessage", Some(params)).await {
                    Ok(r) => {
                        let t = r.pointer("/content/text").and_then(Value::as_str).unwrap_or("No response");
                        // What reached the server, for tests (the client sees the result redacted anyway).
                        eprintln!("fixture received sampling answer: {t}");
                        text(format!("LLM response: {t}"))
                    }
                    Err(e) => text(format!("Sampling not supported or error: {}", e.message)),
                }
            }
            "test_elicitation" => {
                let message =
                    args.get("message").and_then(Value::as_str).ok_or_else(|| invalid("message is required"))?;
                let params = json!({"message": message, "requestedSchema": {"type": "object", "properties": {"response": {"type": "string", "description": "User's response"}}, "required": ["response"]}});
                self.elicit(&peer, params, "User response").await
            }
            "test_elicitation_sep1034_defaults" => {
                let params = json!({"message": "Please review and update the form fields with defaults", "requestedSchema": {"type": "object", "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Verification status", "default": true}
                }, "required": []}});
                self.elicit(&peer, params, "Elicitation completed").await
            }
            "test_elicitation_sep1330_enums" => {
                let params = json!({"message": "Please select options from the enum fields", "requestedSchema": {"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": [
                        {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3, "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3, "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}}
                }, "required": []}});
                self.elicit(&peer, params, "Elicitation completed").await
            }
            "json_schema_2020_12_tool" => text(format!("JSON Schema 2020-12 tool called with: {args}")),
            "whoami" => text(std::env::var("FIXTURE_IDENTITY").unwrap_or_else(|_| "anonymous".into())),
            "rows" => {
                let v = args.get("value").cloned().unwrap_or(Value::Null);
                json!({"content": [{"type": "text", "text": v.to_string()}], "structuredContent": v})
            }
            "fail" => {
                let m = args.get("message").and_then(Value::as_str).unwrap_or("failed");
                return Err(ErrorObject::new(jsonrpc::INTERNAL_ERROR, m.to_string()));
            }
            "trace_context" => {
                text(meta.as_ref().and_then(|m| m.get("traceparent")).and_then(Value::as_str).unwrap_or("none"))
            }
            "test_header_param" => text(format!("region={} count={}", args["region"], args["count"])),
            "echo" => text(args.get("text").and_then(Value::as_str).ok_or_else(|| invalid("text is required"))?),
            "slow" => {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(100).min(60_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(format!("slept {ms} ms"))
            }
            "hang" => {
                futures::future::pending::<()>().await;
                unreachable!()
            }
            "crash" => {
                eprintln!("warden-fixture: crash tool called; exiting");
                std::process::exit(3)
            }
            "garbage" => {
                if self.stdio {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(b"this is not json\n{\"broken\": \n\xff\xfe\n");
                    let _ = out.flush();
                }
                text("after garbage")
            }
            "test_input_required_result_elicitation"
            | "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                // Asked as a 2026 server (a stateless request), the question has the key the
                // conformance suite names; a 2025 session's request has none.
                let stateless = crate::tasks::stateless(meta.as_ref());
                let name = ask_name_as(&peer, "What is your name?", stateless.then_some("user_name")).await?;
                text(format!("Hello, {name}!"))
            }
            // A 2025 server asks only for what the client declared in `initialize`.
            "test_input_required_result_capabilities" => {
                let can = |c: &str| self.client_caps.get(c).is_some();
                let name = if can("elicitation") { Some(ask_name(&peer, "What is your name?").await?) } else { None };
                let said = if can("sampling") { Some(ask_model(&peer).await?) } else { None };
                text(format!("name: {name:?}; the model said: {said:?}"))
            }
            "test_input_required_result_sampling" => text(format!("The model said: {}", ask_model(&peer).await?)),
            "test_input_required_result_list_roots" => text(format!("Roots: {}", ask_roots(&peer).await?)),
            "test_input_required_result_multiple_inputs" => {
                let (n, m, r) =
                    futures::join!(ask_name(&peer, "What is your name?"), ask_model(&peer), ask_roots(&peer));
                text(format!("Hello, {}! The model said: {}. Roots: {}", n?, m?, r?))
            }
            "test_input_required_result_multi_round" => {
                let first = ask_name(&peer, "Step 1: what is your name?").await?;
                let second = ask_name(&peer, "Step 2: and your family name?").await?;
                text(format!("Hello, {first} {second}!"))
            }
            "test_missing_capability" => {
                let params = json!({"messages": [{"role": "user", "content": {"type": "text", "text": "Say hi"}}], "maxTokens": 10});
                match peer.request("sampling/createMessage", Some(params)).await {
                    Ok(_) => text("sampled"),
                    Err(e) => text(format!("Sampling not supported or error: {}", e.message)),
                }
            }
            "test_streaming_elicitation" => {
                let token = meta.as_ref().and_then(|m| m.get("progressToken")).cloned().unwrap_or(json!("token-abc"));
                peer.notify(
                    "notifications/progress",
                    Some(json!({"progressToken": token, "progress": 50, "total": 100})),
                );
                text("streamed")
            }
            "test_logging_tool" => {
                self.log(&peer, "Diagnostic trace logging activated");
                text("logged")
            }
            "test_trigger_tool_change" | "test_trigger_prompt_change" => {
                let kind = if name == "test_trigger_tool_change" { "tools" } else { "prompts" };
                peer.notify(&format!("notifications/{kind}/list_changed"), None);
                text("Mutation triggered")
            }
            // A multi round-trip first, then a task (the tasks scenarios' composition).
            "test_tool_with_task" => {
                if !crate::tasks::takes_tasks(meta.as_ref(), &self.client_caps) {
                    return Err(crate::tasks::needs_tasks());
                }
                let name = ask_name(&peer, "What is your name?").await?;
                return crate::tasks::create(crate::tasks::Body::Answer(text(format!("Hello, {name}!"))));
            }
            "roots" => match peer.request("roots/list", None).await {
                Ok(r) => text(format!("roots: {}", r.get("roots").cloned().unwrap_or(json!([])))),
                Err(e) => text(format!("roots error: {}", e.message)),
            },
            _ => return Err(invalid(&format!("Unknown tool: {name}"))),
        })
    }
}

fn prompt_get(name: &str, args: &Value) -> Result<Value, ErrorObject> {
    let msg = |content: Value| json!({"role": "user", "content": content});
    let arg = |k: &str| args.get(k).and_then(Value::as_str).ok_or_else(|| invalid(&format!("missing argument {k}")));
    Ok(match name {
        "test_simple_prompt" => {
            json!({"messages": [msg(json!({"type": "text", "text": "This is a simple prompt for testing."}))]})
        }
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            json!({"messages": [msg(json!({"type": "text", "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'")}))]})
        }
        "test_prompt_with_embedded_resource" => {
            let uri = arg("resourceUri")?;
            json!({"messages": [
                msg(json!({"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}})),
                msg(json!({"type": "text", "text": "Please process the embedded resource above."}))
            ]})
        }
        "test_prompt_with_image" => json!({"messages": [
            msg(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            msg(json!({"type": "text", "text": "Please analyze the image above."}))
        ]}),
        _ => return Err(invalid(&format!("Unknown prompt: {name}"))),
    })
}

fn resource_read(uri: &str) -> Result<Value, ErrorObject> {
    let one = |c: Value| json!({"contents": [c]});
    if let Some(rest) = uri.strip_prefix("test://template/") {
        if let Some(id) = rest.strip_suffix("/data").filter(|id| !id.is_empty() && !id.contains('/')) {
            let body = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            return Ok(one(json!({"uri": uri, "mimeType": "application/json", "text": body.to_string()})));
        }
    }
    Ok(match uri {
        "test://static-text" => one(
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}),
        ),
        "test://static-binary" => one(json!({"uri": uri, "mimeType": "image/png", "blob": PNG})),
        "test://watched-resource" => {
            one(json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"}))
        }
        _ => {
            let mut e = ErrorObject::new(jsonrpc::RESOURCE_NOT_FOUND, "Resource not found");
            e.data = Some(json!({"uri": uri}));
            return Err(e);
        }
    })
}

impl Session for FixtureSession {
    fn request(
        self: Arc<Self>,
        _id: warden_protocol::jsonrpc::Id,
        method: String,
        params: Option<Value>,
        peer: Peer,
        _caller: Option<Arc<warden_policy::Principal>>,
    ) -> BoxFuture<'static, Result<Value, ErrorObject>> {
        async move {
            let p = params.unwrap_or_else(|| json!({}));
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            match method.as_str() {
                "ping" => Ok(json!({})),
                "tools/list" => Ok(listed_tools()),
                "tools/call" => {
                    let args = p.get("arguments").cloned().unwrap_or_else(|| json!({}));
                    self.call_tool(&s("name"), args, p.get("_meta").cloned(), peer).await
                }
                "resources/list" => Ok(apply_overrides(resources(), "resources", &overrides())),
                "resources/templates/list" => Ok(json!({"resourceTemplates": [{"uriTemplate": "test://template/{id}/data", "name": "template",
                    "title": "Resource Template", "description": "A resource template with parameter substitution", "mimeType": "application/json"}]})),
                "resources/read" => resource_read(&s("uri")),
                "resources/subscribe" => {
                    self.log(&self.peer, &format!("Subscribed to resource: {}", s("uri")));
                    Ok(json!({}))
                }
                "resources/unsubscribe" => {
                    self.log(&self.peer, &format!("Unsubscribed from resource: {}", s("uri")));
                    Ok(json!({}))
                }
                "prompts/list" => Ok(apply_overrides(prompts(), "prompts", &overrides())),
                // A prompt that asks its user first (a multi round-trip for a stateless client).
                "prompts/get" if s("name") == "test_input_required_result_prompt" => {
                    let name = ask_name(&peer, "Who is the greeting for?").await?;
                    Ok(json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("Write a greeting for {name}.")}}]}))
                }
                "prompts/get" => prompt_get(&s("name"), p.get("arguments").unwrap_or(&json!({}))),
                "logging/setLevel" => {
                    self.log(&self.peer, &format!("Log level set to: {}", s("level")));
                    Ok(json!({}))
                }
                "tasks/get" | "tasks/update" | "tasks/cancel" => crate::tasks::follow_up(&method, &p),
                "completion/complete" => Ok(json!({"completion": {"values": [], "total": 0, "hasMore": false}})),
                _ => Err(ErrorObject::new(jsonrpc::METHOD_NOT_FOUND, "Method not found")),
            }
        }
        .boxed()
    }

    fn notification(self: Arc<Self>, _method: String, _params: Option<Value>) {}

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async {}.boxed()
    }
}
