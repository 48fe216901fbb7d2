//! Issue 21, the tasks extension (SEP-2663) through Warden: a tool call's task id is sealed to
//! its caller, follow-ups are routed by it and refused to anyone else, a forged id is unknown,
//! a task's result goes through the output stages, its questions through `client_requests`,
//! and the kill switch stops a task's follow-ups.

use crate::authz::key;
use crate::stateless::{meta_with, post};
use serde_json::{json, Value};
use std::time::Duration;
use warden_testkit::harness::{fixture_stdio_upstream, warden};

const TASKS: &str = "io.modelcontextprotocol/tasks";

fn with_tasks() -> Value {
    meta_with(json!({"elicitation": {}, "extensions": {TASKS: {}}}))
}

/// A follow-up (`tasks/*`) with its `Mcp-Name`, as `bearer`.
async fn follow(url: &str, bearer: Option<&str>, method: &str, mut params: Value) -> (u16, Value) {
    params["_meta"] = with_tasks();
    let id = params["taskId"].as_str().unwrap_or_default().to_string();
    post(url, bearer, method, params, &[("mcp-name", Some(id.as_str()))]).await
}

/// Poll `tasks/get` until the task's status is one of `want`.
async fn until(url: &str, bearer: Option<&str>, id: &str, want: &[&str]) -> Value {
    for _ in 0..100 {
        let (s, g) = follow(url, bearer, "tasks/get", json!({"taskId": id})).await;
        assert_eq!(s, 200, "{g}");
        if want.iter().any(|w| g["result"]["status"] == *w) {
            return g["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} never reached {want:?}");
}

#[tokio::test]
async fn a_task_is_its_callers_alone_and_its_result_is_vetted() {
    let (alice, ea) = key("alice", &["mcp"], &[], None);
    let (bob, eb) = key("bob", &["mcp"], &[], None);
    let up = fixture_stdio_upstream("fx", Some(""), "client_requests = [\"elicitation\"]");
    let w = warden("", &format!("{up}\n[auth]\n{ea}{eb}\n{}", warden_testkit::harness::ALLOW_ALL));
    let (a, b) = (Some(alice.as_str()), Some(bob.as_str()));

    // The call answers with a task: Warden's sealed id, the Task fields only.
    let secret = "AKIAIOSFODNN7EXAMPLF";
    let call = json!({"name": "slow_compute", "arguments": {"seconds": 0.2, "label": secret}, "_meta": with_tasks()});
    let (s, c) = post(&w.url, a, "tools/call", call, &[]).await;
    assert_eq!(s, 200, "{c}");
    let r = &c["result"];
    assert_eq!(r["resultType"], "task", "{c}");
    let id = r["taskId"].as_str().unwrap().to_string();
    assert!(id.starts_with("wt1.") && !id.contains("task-"), "the upstream's id stays inside: {id}");
    assert!(r.get("requestState").is_none() && r.get("result").is_none(), "{r}");
    assert!(r["ttlMs"].as_u64().is_some_and(|t| t <= 24 * 3600 * 1000), "{r}");

    // Another caller, a forged id and an altered one: unknown, all alike.
    let (s, e) = follow(&w.url, b, "tasks/get", json!({"taskId": id})).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (200, Some(-32602)), "bob may not see alice's task: {e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("unknown task"), "{e}");
    let (_, e) = follow(&w.url, b, "tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(e["error"]["code"], -32602, "nor cancel it: {e}");
    let mut altered = id.clone().into_bytes();
    let n = altered.len() - 3;
    altered[n] = if altered[n] == b'A' { b'B' } else { b'A' };
    for forged in [String::from_utf8(altered).unwrap(), "task-1-00000000".into(), "wt1.".into()] {
        let (_, e) = follow(&w.url, a, "tasks/get", json!({"taskId": forged})).await;
        assert_eq!(e["error"]["code"], -32602, "{forged}: {e}");
    }
    // The extension is the request's: without it, -32021 (HTTP 400), before any routing.
    let mut p = json!({"taskId": id});
    p["_meta"] = meta_with(json!({}));
    let (s, e) = post(&w.url, a, "tasks/get", p, &[("mcp-name", Some(id.as_str()))]).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32021)), "{e}");
    assert_eq!(e["error"]["data"]["requiredCapabilities"]["extensions"][TASKS], json!({}), "{e}");
    // Mcp-Name is the task id.
    let mut p = json!({"taskId": id});
    p["_meta"] = with_tasks();
    let (s, e) = post(&w.url, a, "tasks/get", p, &[("mcp-name", Some("another"))]).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32020)), "{e}");

    // Its owner polls it to the end: the result went through the output stages.
    let done = until(&w.url, a, &id, &["completed"]).await;
    assert_eq!(done["taskId"], id.as_str(), "the client's id, never the upstream's: {done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap();
    assert!(!text.contains(secret) && text.contains("REDACTED"), "redacted like a direct result: {text}");
}

#[tokio::test]
async fn a_tasks_question_goes_through_client_requests() {
    // Elicitation allowed: the question reaches the client, the answer is redacted on its way up.
    let up = fixture_stdio_upstream("fx", Some(""), "client_requests = [\"elicitation\"]");
    let w = warden("", &format!("{up}\n{}", warden_testkit::harness::ALLOW_ALL));
    let call = json!({"name": "confirm_delete", "arguments": {"filename": "a.txt"}, "_meta": with_tasks()});
    let (_, c) = post(&w.url, None, "tools/call", call.clone(), &[]).await;
    let id = c["result"]["taskId"].as_str().unwrap().to_string();
    let asked = until(&w.url, None, &id, &["input_required"]).await;
    let q = &asked["inputRequests"]["confirm"];
    assert_eq!(q["method"], "elicitation/create", "{asked}");
    let answer = json!({"confirm": {"action": "accept", "content": {"confirm": true, "name": "AKIAIOSFODNN7EXAMPLF"}}});
    let (s, ack) = follow(&w.url, None, "tasks/update", json!({"taskId": id, "inputResponses": answer})).await;
    assert_eq!((s, &ack["result"]), (200, &json!({"resultType": "complete"})), "{ack}");
    let done = until(&w.url, None, &id, &["completed"]).await;
    assert_eq!(done["result"]["content"][0]["text"], "deleted", "{done}");

    // Not allowed for this server: the client never sees the question; the task fails, with why,
    // and is cancelled upstream.
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let w = warden("", &format!("{up}\n{}", warden_testkit::harness::ALLOW_ALL));
    let (_, c) = post(&w.url, None, "tools/call", call, &[]).await;
    let id = c["result"]["taskId"].as_str().unwrap().to_string();
    let failed = until(&w.url, None, &id, &["failed", "input_required"]).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed.get("inputRequests").is_none(), "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("not allowed for this server"), "{failed}");
    let after = until(&w.url, None, &id, &["cancelled"]).await;
    assert_eq!(after["status"], "cancelled", "the upstream was told: {after}");
}

#[tokio::test]
async fn a_kill_switch_stops_a_tasks_follow_ups() {
    let up = fixture_stdio_upstream("fx", Some(""), "");
    let (admin_cfg, admin) = crate::approval::admin_section();
    let w = warden("", &format!("{up}\n{admin_cfg}\n{}", warden_testkit::harness::ALLOW_ALL));
    let call = json!({"name": "slow_compute", "arguments": {"seconds": 30, "label": "x"}, "_meta": with_tasks()});
    let (_, c) = post(&w.url, None, "tools/call", call, &[]).await;
    let id = c["result"]["taskId"].as_str().unwrap().to_string();
    assert_eq!(until(&w.url, None, &id, &["working"]).await["status"], "working");
    let kill = json!({"server": "fx", "tool": "slow_compute", "reason": "incident"});
    let r = reqwest::Client::new()
        .post(format!("{admin}/kill-switches"))
        .bearer_auth(crate::approval::TOKEN)
        .json(&kill)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, e) = follow(&w.url, None, "tasks/get", json!({"taskId": id})).await;
    assert!(e.to_string().contains("switched off"), "{e}");
    // Cancelling it still goes through.
    let (s, ack) = follow(&w.url, None, "tasks/cancel", json!({"taskId": id})).await;
    assert_eq!((s, &ack["result"]), (200, &json!({"resultType": "complete"})), "{ack}");
}

/// A poll from a request that lacks the capability a task's question needs is -32021: the
/// task waits for a poll that can answer (it is not cancelled, as for an operator's refusal).
/// (The upstream speaks 2026-07-28: one connection serves both capability sets. A 2025
/// upstream's task lives in the upstream session of the pooled session that created it.)
#[tokio::test]
async fn a_question_the_poll_cannot_answer_waits() {
    let fx = warden_testkit::harness::fixture_http();
    let up = format!(
        "[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {:?}\nclient_requests = [\"elicitation\"]\n",
        fx.url
    );
    let w = warden("", &format!("{up}\n{}", warden_testkit::harness::ALLOW_ALL));
    let call = json!({"name": "confirm_delete", "arguments": {"filename": "b.txt"}, "_meta": with_tasks()});
    let (_, c) = post(&w.url, None, "tools/call", call, &[]).await;
    let id = c["result"]["taskId"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = json!({"taskId": id});
    p["_meta"] = meta_with(json!({"extensions": {TASKS: {}}}));
    let (s, e) = post(&w.url, None, "tasks/get", p, &[("mcp-name", Some(id.as_str()))]).await;
    assert_eq!((s, e["error"]["code"].as_i64()), (400, Some(-32021)), "{e}");
    assert_eq!(e["error"]["data"]["requiredCapabilities"], json!({"elicitation": {}}), "{e}");
    let asked = until(&w.url, None, &id, &["input_required", "failed", "cancelled"]).await;
    assert_eq!(asked["status"], "input_required", "the task still waits: {asked}");
}
