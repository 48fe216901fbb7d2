//! Issue 21 (first slice): MCP 2026-07-28 stateless requests on the same `/mcp` endpoint as
//! 2025 sessions — checked before they run (each standard header against the body), answered
//! in the revision's shape, and run in a session pooled per principal, never shared.

use crate::authz::key;
use serde_json::{json, Value};
use warden_testkit::harness::{fixture_stdio_upstream, warden};

const V: &str = "2026-07-28";

fn meta() -> Value {
    meta_with(json!({}))
}

pub(crate) fn meta_with(caps: Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": caps,
           "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}})
}

/// POST one stateless request with these headers (the standard ones unless overridden).
pub(crate) async fn post(
    url: &str,
    bearer: Option<&str>,
    method: &str,
    params: Value,
    headers: &[(&str, Option<&str>)],
) -> (u16, Value) {
    let mut p = params;
    if p.get("_meta").is_none() {
        p["_meta"] = meta();
    }
    let name = p.get("name").or(p.get("uri")).and_then(Value::as_str).map(str::to_string);
    let mut h: Vec<(String, String)> =
        vec![("mcp-protocol-version".into(), V.into()), ("mcp-method".into(), method.into())];
    if let Some(n) = name {
        h.push(("mcp-name".into(), n));
    }
    for (k, v) in headers {
        h.retain(|(hk, _)| hk != k);
        if let Some(v) = v {
            h.push((k.to_string(), v.to_string()));
        }
    }
    let mut rb = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": p}));
    for (k, v) in h {
        rb = rb.header(k, v);
    }
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    // A JSON body, or an SSE stream whose last data line is the answer.
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        let last = text.lines().filter_map(|l| l.strip_prefix("data:")).rfind(|d| !d.trim().is_empty());
        last.and_then(|d| serde_json::from_str(d.trim()).ok()).unwrap_or(Value::Null)
    });
    (status, body)
}

#[tokio::test]
async fn stateless_requests_are_checked_shaped_and_pooled_per_principal() {
    let (alice, ea) = key("alice", &["mcp"], &["all"], None);
    let (bob, eb) = key("bob", &["mcp"], &[], None);
    let rules =
        "[[rule]]\nid = \"alice-all\"\ntools = [\"*\"]\nresources = [\"*\"]\nprompts = [\"*\"]\nroles = [\"all\"]\n\
                 [[rule]]\nid = \"bob-echo\"\ntools = [\"echo\"]\nscopes = [\"mcp\"]\n";
    let w = warden("", &format!("{}\n[auth]\n{ea}{eb}\n{rules}", fixture_stdio_upstream("fx", Some(""), "")));
    let (a, b) = (Some(alice.as_str()), Some(bob.as_str()));

    // server/discover: what the revision requires, serverInfo in _meta.
    let (s, d) = post(&w.url, a, "server/discover", json!({}), &[]).await;
    assert_eq!(s, 200, "{d}");
    let r = &d["result"];
    assert_eq!(r["resultType"], "complete");
    assert!(r["supportedVersions"].as_array().unwrap().iter().any(|v| v == V), "{r}");
    assert_eq!(r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "warden");
    assert!(r["capabilities"]["tools"].is_object(), "{r}");

    // A call and a listing, in the revision's shape; listings are private to their caller.
    let (s, c) = post(&w.url, a, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}), &[]).await;
    assert_eq!((s, c["result"]["content"][0]["text"].as_str()), (200, Some("hi")), "{c}");
    assert_eq!(c["result"]["resultType"], "complete");
    let (_, la) = post(&w.url, a, "tools/list", json!({}), &[]).await;
    assert_eq!((la["result"]["cacheScope"].as_str(), la["result"]["ttlMs"].as_u64()), (Some("private"), Some(0)));
    let (_, lb) = post(&w.url, b, "tools/list", json!({}), &[]).await;
    let names =
        |v: &Value| v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect::<Vec<_>>();
    assert!(names(&la).len() > 1, "{la}");
    assert_eq!(names(&lb), vec![json!("echo")], "bob's pooled session is his own: {lb}");
    let (_, c) = post(&w.url, b, "tools/call", json!({"name": "test_simple_text", "arguments": {}}), &[]).await;
    assert!(c.get("error").is_some() || c["result"]["isError"] == true, "bob may not: {c}");

    // Each standard header that is missing, malformed or not the body's: 400, -32020.
    let call = json!({"name": "echo", "arguments": {"text": "x"}});
    for h in [
        vec![("mcp-method", None)],
        vec![("mcp-method", Some("tools/list"))],
        vec![("mcp-method", Some("TOOLS/CALL"))],
        vec![("mcp-name", None)],
        vec![("mcp-name", Some("test_simple_text"))],
        vec![("mcp-name", Some("=?base64?not base64?="))],
        vec![("mcp-protocol-version", None)],
    ] {
        let (s, e) = post(&w.url, a, "tools/call", call.clone(), &h).await;
        assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32020)), "{h:?}: {e}");
        assert_eq!(e["id"], 5, "the id is echoed");
    }
    // The name in base64, as clients send non-ASCII: accepted.
    let (s, e) = post(&w.url, a, "tools/call", call.clone(), &[("mcp-name", Some("=?base64?ZWNobw==?="))]).await;
    assert_eq!(s, 200, "{e}");
    // A version header that is not the body's: -32020 before any version check.
    let (s, e) = post(&w.url, a, "tools/call", call.clone(), &[("mcp-protocol-version", Some("2099-01-01"))]).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32020)), "the header is not the body's: {e}");
    // Methods the revision removed: 404, -32601.
    for m in ["initialize", "ping", "resources/subscribe"] {
        let (s, e) = post(&w.url, a, m, json!({}), &[]).await;
        assert_eq!((s, e["error"]["code"].as_i64()), (404, Some(-32601)), "{m}: {e}");
    }
    // A resource that is not there: -32602 with its URI.
    let (_, e) = post(&w.url, a, "resources/read", json!({"uri": "test://nope"}), &[]).await;
    assert_eq!(
        (e["error"]["code"].as_i64(), e["error"]["data"]["uri"].as_str()),
        (Some(-32602), Some("test://nope")),
        "{e}"
    );
    // No GET stream in this revision.
    let r = reqwest::Client::new()
        .get(&w.url)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", V)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // The calls are on the record, under their principal.
    let cfg = w.dir.join("warden.toml").display().to_string();
    let calls = crate::audit::records(&cfg, &["--kind", "call"]);
    assert!(
        calls.iter().any(|r| r["subject"].as_str().is_some_and(|s| s.ends_with("alice")) && r["name"] == "echo"),
        "{calls:?}"
    );
}

/// Issue 21: what a 2025 upstream asks the client mid-call (elicitation, sampling) reaches a
/// stateless client as `input_required`; its retry carries the answers and Warden's sealed
/// `requestState`, which is refused when altered, another caller's, another request's or used
/// twice; a capability the request did not declare is -32021 (HTTP 400); answers are redacted
/// on their way upstream and the exchanges recorded.
#[tokio::test]
async fn multi_round_trips_reach_a_2025_upstream_through_sealed_state() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let (bob, eb) = key("bob", &["mcp"], &[], None);
    let up = fixture_stdio_upstream("fx", Some(""), "client_requests = [\"sampling\", \"elicitation\"]\n");
    let w = warden("", &format!("{up}\n[auth]\n{ea}{eb}\n"));
    let (a, b) = (Some(alice.as_str()), Some(bob.as_str()));
    let ask = json!({"name": "test_elicitation", "arguments": {"message": "Your name?"},
                     "_meta": meta_with(json!({"elicitation": {}}))});

    // Round 1: the upstream's elicitation/create comes back as input_required.
    let (s, r1) = post(&w.url, a, "tools/call", ask.clone(), &[]).await;
    assert_eq!(s, 200, "{r1}");
    let r = &r1["result"];
    assert_eq!(r["resultType"], "input_required", "{r1}");
    let (key_name, req) =
        r["inputRequests"].as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    assert_eq!(req["method"], "elicitation/create");
    assert_eq!(req["params"]["message"], "Your name?");
    assert!(req.get("id").is_none() && req.get("jsonrpc").is_none(), "{req}");
    let state = r["requestState"].as_str().unwrap().to_string();

    // Refused retries: altered, another caller's, another request's.
    let retry = |state: &str, args: Value| {
        let mut p = ask.clone();
        p["arguments"] = args;
        p["inputResponses"] = json!({ key_name.clone(): {"action": "accept", "content": {"response": "Alice"}} });
        p["requestState"] = state.into();
        p
    };
    let args = json!({"message": "Your name?"});
    let (_, e) = post(&w.url, a, "tools/call", retry(&format!("{state}x"), args.clone()), &[]).await;
    assert_eq!(e["error"]["code"], -32602, "altered: {e}");
    let (_, e) = post(&w.url, b, "tools/call", retry(&state, args.clone()), &[]).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("another caller"), "bob: {e}");
    let (_, e) = post(&w.url, a, "tools/call", retry(&state, json!({"message": "Other?"})), &[]).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("another request"), "{e}");

    // Answers without a state answer nothing: the request runs afresh (and asks again).
    let mut stray = retry(&state, args.clone());
    stray.as_object_mut().unwrap().remove("requestState");
    let (_, e) = post(&w.url, a, "tools/call", stray, &[]).await;
    assert_eq!(e["result"]["resultType"], "input_required", "{e}");
    // Round 2: the answer goes to the upstream, the call completes.
    let (s, r2) = post(&w.url, a, "tools/call", retry(&state, args.clone()), &[]).await;
    assert_eq!(s, 200, "{r2}");
    assert_eq!(r2["result"]["resultType"], "complete", "{r2}");
    let text = r2["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("action=accept") && text.contains("Alice"), "{text}");
    // Used once.
    let (_, e) = post(&w.url, a, "tools/call", retry(&state, args), &[]).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("unknown requestState"), "{e}");

    // A capability the request did not declare: -32021, HTTP 400, with what it needs.
    let (s, e) =
        post(&w.url, a, "tools/call", json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}), &[]).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32021)), "{e}");
    assert!(e["error"]["data"]["requiredCapabilities"]["sampling"].is_object(), "{e}");

    // Sampling: the model's answer reaches the upstream redacted.
    let sample =
        json!({"name": "test_sampling", "arguments": {"prompt": "hi"}, "_meta": meta_with(json!({"sampling": {}}))});
    let (_, r1) = post(&w.url, a, "tools/call", sample.clone(), &[]).await;
    let k = r1["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let mut p = sample.clone();
    p["inputResponses"] = json!({ k: {"role": "assistant", "content": {"type": "text", "text": "key AKIAIOSFODNN7EXAMPLE"}, "model": "m"} });
    p["requestState"] = r1["result"]["requestState"].clone();
    let (_, r2) = post(&w.url, a, "tools/call", p, &[]).await;
    assert_eq!(r2["result"]["resultType"], "complete", "{r2}");
    // (the fixture's stderr line reaches Warden's log on its own schedule: waited for)
    let mut log = w.log();
    for _ in 0..100 {
        if log.contains("fixture received sampling answer") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = w.log();
    }
    assert!(log.contains("fixture received sampling answer: key [REDACTED:aws_key]"), "{log}");
    assert!(!log.contains("AKIAIOSFODNN7EXAMPLE"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let recs = crate::audit::records(&cfg, &["--kind", "client_request"]);
    assert!(recs.iter().any(|r| r["method"] == "elicitation/create" && r["detail"] == "accept"), "{recs:?}");
    assert!(recs.iter().any(|r| r["method"] == "sampling/createMessage" && r["status"] == "success"), "{recs:?}");
}

/// Issue 21: approval `"user"` asks a stateless client through `input_required` (Warden's own
/// elicitation), bound to the call's arguments; accepted runs the call, declined refuses it.
#[tokio::test]
async fn user_approval_is_an_input_required_round_trip() {
    let rules = "[[rule]]\nid = \"echo-approved\"\ntools = [\"echo\"]\napproval = \"user\"\n";
    let (admin, _) = crate::approval::admin_section();
    let w = warden("", &format!("{}\n{admin}\n{rules}", fixture_stdio_upstream("fx", Some(""), "")));
    let call = |text: &str| json!({"name": "echo", "arguments": {"text": text}, "_meta": meta_with(json!({"elicitation": {}}))});
    for (approve, text) in [(true, "approved call"), (false, "declined call")] {
        let (_, r1) = post(&w.url, None, "tools/call", call(text), &[]).await;
        assert_eq!(r1["result"]["resultType"], "input_required", "{r1}");
        let (k, q) = r1["result"]["inputRequests"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        let msg = q["params"]["message"].as_str().unwrap();
        assert!(msg.starts_with("Approval needed.") && msg.contains(text) && msg.contains("Call digest:"), "{msg}");
        let mut p = call(text);
        p["inputResponses"] = json!({ k: {"action": "accept", "content": {"approve": approve}} });
        p["requestState"] = r1["result"]["requestState"].clone();
        let (_, r2) = post(&w.url, None, "tools/call", p, &[]).await;
        if approve {
            assert_eq!(r2["result"]["content"][0]["text"], text, "{r2}");
        } else {
            assert!(r2.get("error").is_some() || r2["result"]["isError"] == true, "{r2}");
            assert!(r2.to_string().contains("declined"), "{r2}");
        }
    }
}

/// Issue 21: `subscriptions/listen` acknowledges what it honors, tags every notification with
/// the subscription's id, and sends only the types opted into (a tool change, not a prompt
/// change, for a tools-only listener).
#[tokio::test]
async fn subscriptions_listen_is_acknowledged_tagged_and_filtered() {
    use futures::StreamExt;
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let mut params = json!({"notifications": {"toolsListChanged": true}});
    params["_meta"] = meta();
    let listen = reqwest::Client::new()
        .post(&w.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen", "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(listen.status(), 200);
    let mut body = listen.bytes_stream();
    let mut dec = warden_protocol::sse::Decoder::new(1 << 20);
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    // The acknowledgement first.
    while seen.is_empty() {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("ack").unwrap().unwrap();
        seen.extend(dec.feed(&chunk).unwrap().into_iter().filter_map(|e| serde_json::from_str(&e.data).ok()));
    }
    assert_eq!(seen[0]["method"], "notifications/subscriptions/acknowledged", "{seen:?}");
    assert_eq!(seen[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1");
    assert_eq!(seen[0]["params"]["notifications"], json!({"toolsListChanged": true}));
    // A prompt change (not asked for), then a tool change: only the tool change arrives.
    for tool in ["test_trigger_prompt_change", "test_trigger_tool_change"] {
        let (s, r) = post(&w.url, None, "tools/call", json!({"name": tool, "arguments": {}}), &[]).await;
        assert_eq!((s, r["result"]["content"][0]["text"].as_str()), (200, Some("Mutation triggered")), "{r}");
    }
    let mut changes = Vec::new();
    while changes.is_empty() {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("a change").unwrap().unwrap();
        changes
            .extend(dec.feed(&chunk).unwrap().into_iter().filter_map(|e| serde_json::from_str::<Value>(&e.data).ok()));
    }
    assert_eq!(changes[0]["method"], "notifications/tools/list_changed", "{changes:?}");
    assert_eq!(changes[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1");
    assert!(!changes.iter().any(|c| c["method"] == "notifications/prompts/list_changed"), "{changes:?}");
}

/// Issue 21: a tool's `x-mcp-header` arguments must come as `Mcp-Param-*` headers that say
/// what the body says (decoded from base64, integers numerically); otherwise 400, -32020. A
/// tool whose annotations break the revision's rules is not listed at all.
#[tokio::test]
async fn mcp_param_headers_must_match_the_arguments_and_bad_annotations_are_withheld() {
    let dir = warden_testkit::harness::tempdir("mcp-param");
    let f = dir.join("descriptions.json");
    // `test_simple_text` gains an annotation behind `items`: invalid, so withheld.
    let bad = json!({"test_simple_text": {"inputSchema": {"type": "object", "properties": {"l": {"type": "array",
                     "items": {"type": "string", "x-mcp-header": "L"}}}}}});
    std::fs::write(&f, bad.to_string()).unwrap();
    let extra = format!("env = {{ FIXTURE_DESCRIPTIONS = {f:?} }}\n[upstream.sandbox]\nread_only = [{f:?}]\n");
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), &extra));
    // The first request of a caller, before any listing: checked all the same.
    let first = json!({"name": "test_header_param", "arguments": {"region": "us-west1"}});
    let (s, v) = post(&w.url, None, "tools/call", first, &[]).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-32020)), "{v}");
    let (_, l) = post(&w.url, None, "tools/list", json!({}), &[]).await;
    let names: Vec<&str> = l["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"test_header_param") && !names.contains(&"test_simple_text"), "{names:?}");

    let call = |region: &str, count: Value| {
        let mut args = json!({"region": region});
        if !count.is_null() {
            args["count"] = count;
        }
        json!({"name": "test_header_param", "arguments": args})
    };
    let ok = |s: u16, v: &Value| {
        s == 200 && v["result"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("region="))
    };
    // Headers that say what the body says: accepted (base64 decoded, integers as numbers).
    for (region, count, h) in [
        ("us-west1", json!(7), vec![("mcp-param-region", Some("us-west1")), ("mcp-param-count", Some("07"))]),
        ("café", json!(null), vec![("mcp-param-region", Some("=?base64?Y2Fmw6k=?="))]),
    ] {
        let (s, v) = post(&w.url, None, "tools/call", call(region, count), &h).await;
        assert!(ok(s, &v), "{h:?}: {v}");
    }
    // Missing, different, undecodable, or with no argument: refused.
    for (count, h) in [
        (json!(1), vec![("mcp-param-region", Some("us-west1"))]),
        (json!(null), vec![("mcp-param-region", Some("eu-west1"))]),
        (json!(null), vec![("mcp-param-region", Some("=?base64?dXMtd2VzdDE?="))]),
        (json!(null), vec![("mcp-param-region", Some("us-west1")), ("mcp-param-count", Some("3"))]),
        (json!(null), vec![]),
    ] {
        let (s, v) = post(&w.url, None, "tools/call", call("us-west1", count), &h).await;
        assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-32020)), "{h:?}: {v}");
    }
    // Headers of no annotation are ignored.
    let h = vec![("mcp-param-region", Some("us-west1")), ("mcp-param-other", Some("x"))];
    let (s, v) = post(&w.url, None, "tools/call", call("us-west1", json!(null)), &h).await;
    assert!(ok(s, &v), "{v}");
}
