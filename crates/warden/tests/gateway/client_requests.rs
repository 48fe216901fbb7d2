//! Issue 20 finding 5: requests an upstream sends to the client (sampling, elicitation, roots)
//! are refused unless the upstream's `client_requests` allows them; each exchange is recorded;
//! the client's answer is redacted before it reaches the upstream.

use serde_json::{json, Value};
use std::time::Duration;
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client};

const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

/// Call `tool` and answer the server's request (`method`) with `reply`, on the call's stream;
/// the call's answer, and whether the request reached the client.
async fn call_answering(c: &Client, tool: &str, args: Value, method: &str, reply: Value) -> (Value, bool) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let (answer, asked) = crate::modern_upstream::call_answering(c, body, method, reply).await;
    (answer, asked > 0)
}

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn client_requests_are_ruled_recorded_and_redacted() {
    let sampled =
        json!({"role": "assistant", "content": {"type": "text", "text": format!("the key is {SECRET}")}, "model": "m"});
    let form = json!({"action": "accept", "content": {"response": format!("my key {SECRET}")}});

    // Not allowed (the default): refused, the client never asked, and on record.
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let (answer, asked) =
        call_answering(&c, "test_sampling", json!({"prompt": "hi"}), "sampling/createMessage", sampled.clone()).await;
    assert!(!asked, "{answer}");
    assert!(text(&answer).contains("not allowed for this server"), "{answer}");
    let (answer, asked) = call_answering(&c, "roots", json!({}), "roots/list", json!({"roots": []})).await;
    assert!(!asked && text(&answer).starts_with("roots error:"), "{answer}");
    let cfg = w.dir.join("warden.toml").display().to_string();
    let recs = crate::audit::records(&cfg, &["--kind", "client_request"]);
    assert!(
        recs.iter().any(|r| r["method"] == "sampling/createMessage"
            && r["decision"] == "denied"
            && r["detail"] == "not_allowed"),
        "{recs:?}"
    );
    drop(w);

    // Allowed: relayed, and the answer reaches the server redacted.
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), "client_requests = [\"sampling\", \"elicitation\"]\n"));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let (answer, asked) =
        call_answering(&c, "test_sampling", json!({"prompt": "hi"}), "sampling/createMessage", sampled).await;
    assert!(asked, "{answer}");
    assert!(text(&answer).starts_with("LLM response: the key is "), "{answer}");
    let (answer, asked) =
        call_answering(&c, "test_elicitation", json!({"message": "Your key?"}), "elicitation/create", form).await;
    assert!(asked && text(&answer).contains("action=accept"), "{answer}");
    let log = w.log();
    assert!(log.contains("fixture received sampling answer: the key is [REDACTED:aws_key]"), "{log}");
    assert!(
        log.contains("fixture received elicitation answer: {\\\"response\\\":\\\"my key [REDACTED:aws_key]\\\"}")
            || log.contains("my key [REDACTED:aws_key]"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the server: {log}");
    let cfg = w.dir.join("warden.toml").display().to_string();
    let recs = crate::audit::records(&cfg, &["--kind", "client_request"]);
    let sampling = recs.iter().find(|r| r["method"] == "sampling/createMessage").expect("recorded");
    assert_eq!((sampling["decision"].as_str(), sampling["status"].as_str()), (Some("allowed"), Some("success")));
    assert!(sampling["findings"].to_string().contains("answer_redacted:"), "{sampling}");
    let elicit = recs.iter().find(|r| r["method"] == "elicitation/create").expect("recorded");
    assert_eq!(elicit["detail"], "accept");
    // Roots stay refused: not in the list.
    let (_, asked) = call_answering(&c, "roots", json!({}), "roots/list", json!({"roots": []})).await;
    assert!(!asked);
}

/// A question to the client whose call ends before the answer (the client cancels the call)
/// is still on record, as cancelled.
#[tokio::test]
async fn a_question_whose_call_ends_first_is_recorded_as_cancelled() {
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), "client_requests = [\"elicitation\"]\n"));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "test_elicitation", "arguments": {"message": "Your name?"}}});
    let mut sse = warden_testkit::harness::SseMessages::new(c.post_stream(&body).await, Duration::from_secs(20));
    sse.until(|m| m["method"] == "elicitation/create").await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}});
    assert_eq!(c.post(&cancel).await.status, 202);
    drop(sse);
    let cfg = w.dir.join("warden.toml").display().to_string();
    let mut recs = Vec::new();
    for _ in 0..50 {
        recs = crate::audit::records(&cfg, &["--kind", "client_request"]);
        if recs.iter().any(|r| r["status"] == "cancelled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recs.iter().any(|r| r["status"] == "cancelled" && r["method"] == "elicitation/create"), "{recs:?}");
}
