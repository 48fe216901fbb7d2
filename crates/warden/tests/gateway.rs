//! End-to-end tests of the `warden` binary in front of the fixture server: hostile clients,
//! hostile upstreams, federation, sessions and resumption.

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
#[path = "gateway/admin_views.rs"]
mod admin_views;
#[path = "gateway/approval.rs"]
mod approval;
#[path = "gateway/as_cluster.rs"]
mod as_cluster;
#[path = "gateway/as_flood.rs"]
mod as_flood;
#[path = "gateway/audit.rs"]
mod audit;
#[path = "gateway/audit_forgery.rs"]
mod audit_forgery;
#[path = "gateway/audit_pg.rs"]
mod audit_pg;
#[path = "gateway/auth.rs"]
mod auth;
#[path = "gateway/authz.rs"]
mod authz;
#[path = "gateway/builtin.rs"]
mod builtin;
#[path = "gateway/classifier.rs"]
mod classifier;
#[path = "gateway/client_requests.rs"]
mod client_requests;
#[path = "gateway/cluster.rs"]
mod cluster;
#[path = "gateway/connections.rs"]
mod connections;
#[path = "gateway/console.rs"]
mod console;
#[path = "gateway/console_tools.rs"]
mod console_tools;
#[path = "gateway/content.rs"]
mod content;
#[path = "gateway/hostile_upstream.rs"]
mod hostile_upstream;
#[path = "gateway/key_reach.rs"]
mod key_reach;
#[path = "gateway/modern_upstream.rs"]
mod modern_upstream;
#[path = "gateway/onboarding.rs"]
mod onboarding;
#[path = "gateway/pg_tls.rs"]
mod pg_tls;
#[path = "gateway/pins.rs"]
mod pins;
#[path = "gateway/reload.rs"]
mod reload;
#[path = "gateway/replicas.rs"]
mod replicas;
#[path = "gateway/sandbox.rs"]
mod sandbox;
#[path = "gateway/shared_store.rs"]
mod shared_store;
#[path = "gateway/sql_postgres.rs"]
mod sql_postgres;
#[path = "gateway/stateless.rs"]
mod stateless;
#[path = "gateway/taint.rs"]
mod taint;
#[path = "gateway/tasks.rs"]
mod tasks;
#[path = "gateway/tenants.rs"]
mod tenants;
#[path = "gateway/upstream_identity.rs"]
mod upstream_identity;
#[path = "gateway/upstream_pool.rs"]
mod upstream_pool;
#[path = "gateway/user_links.rs"]
mod user_links;

use warden_testkit::harness::{self, bin, fixture_stdio_upstream, warden, Client};

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

async fn raw_post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

const JSON_HDRS: &[(&str, &str)] =
    &[("content-type", "application/json"), ("accept", "application/json, text/event-stream")];

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_the_gateway_keeps_working() {
    let w = warden("max_body_bytes = 65536\nmax_json_depth = 32", &fixture_stdio_upstream("fx", Some(""), ""));
    let url = &w.url;

    // malformed JSON
    let (s, v) = raw_post(url, JSON_HDRS, b"{not json".to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-32700)), "{v}");
    // invalid UTF-8
    let (s, v) = raw_post(url, JSON_HDRS, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec()).await;
    assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-32700)), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("UTF-8"));
    // deep nesting
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"x\":{}{}}}}}",
        "[".repeat(500),
        "]".repeat(500)
    );
    let (s, v) = raw_post(url, JSON_HDRS, deep.into_bytes()).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("deeper than 32"), "{v}");
    // huge body
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(200_000)
    );
    let (s, v) = raw_post(url, JSON_HDRS, big.into_bytes()).await;
    assert_eq!(s, 413, "{v}");
    // wrong content type, unacceptable Accept
    let (s, _) = raw_post(url, &[("content-type", "text/plain"), ("accept", "application/json")], b"{}".to_vec()).await;
    assert_eq!(s, 415);
    let (s, _) = raw_post(url, &[("content-type", "application/json"), ("accept", "text/html")], b"{}".to_vec()).await;
    assert_eq!(s, 406);
    // a batch, a non-object, a bad jsonrpc version
    for body in ["[]", "42", r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#] {
        let (s, v) = raw_post(url, JSON_HDRS, body.as_bytes().to_vec()).await;
        assert_eq!((s, v["error"]["code"].as_i64()), (400, Some(-32600)), "{body}: {v}");
    }
    // oversized header
    let r = reqwest::Client::new().post(url).header("x-big", "a".repeat(100_000)).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431);
    // session rules
    let (s, _) = raw_post(url, JSON_HDRS, br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec()).await;
    assert_eq!(s, 400, "missing session id");
    let mut h = JSON_HDRS.to_vec();
    h.push(("mcp-session-id", "not-a-session"));
    let (s, _) = raw_post(url, &h, br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec()).await;
    assert_eq!(s, 404, "unknown session id");

    let mut c = Client::new(url);
    c.initialize().await;
    // unknown method, unknown tool, unsupported protocol version header
    assert_eq!(c.call(1, "no/such/method", json!({})).await["error"]["code"], -32601);
    assert_eq!(c.tool(2, "no_such_tool", json!({})).await["error"]["code"], -32602);
    let r = c
        .request(reqwest::Method::POST)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "1999-01-01")
        .body(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // DNS rebinding: foreign Host or Origin
    for (k, v) in [("host", "evil.example:80"), ("origin", "http://evil.example")] {
        let r = c
            .request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .header(k, v)
            .body(json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{k}: {v}");
    }
    // still healthy
    assert_eq!(text_of(&c.tool(5, "echo", json!({"text": "still here"})).await), "still here");
    // DELETE terminates; the id is then unknown
    let r = c.request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c.post(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"})).await;
    assert_eq!(r.status, 404);
    assert!(!w.log().contains("panicked"), "{}", w.log());
}

/// A client still sending when its oversized head (a 200 KB `Authorization` header) is refused
/// reads the 431, not a broken pipe or a reset: Warden half-closes and discards what keeps
/// coming, for a bounded time and size, before it closes. Like Node's `fetch`, this client
/// writes its whole request before it reads, and gives up when a write fails.
#[test]
fn an_oversized_head_is_answered_431_while_the_client_still_sends() {
    use std::io::{Read, Write};
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let addr = w.url.trim_start_matches("http://").trim_end_matches("/mcp").to_string();
    let body = 16 << 20;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {body}\r\n\r\n",
        "a".repeat(200_000)
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b'x', body));
    for round in 0..2 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        if let Err(e) = s.write_all(&request) {
            panic!("round {round}: the request could not be sent: {e}");
        }
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 431"),
            "round {round}: read {:?} then {read:?}",
            &text[..text.len().min(60)]
        );
    }
}

/// An upstream's answer is read up to twice the largest result a client may get, over HTTP
/// (JSON and SSE) and stdio alike: a bigger one fails its call instead of filling memory, and
/// answers within the bound are still cut to `max_result_bytes` as before.
#[tokio::test]
async fn oversized_upstream_answers_are_refused_not_buffered() {
    let fx = harness::fixture_http();
    let ups = format!(
        "{}\n[[upstream]]\nname = \"web\"\ntransport = \"http\"\nurl = {:?}\n",
        fixture_stdio_upstream("local", Some("local"), ""),
        fx.url
    );
    let w = warden(
        "",
        &format!("{ups}\n[content]\nmax_result_bytes = 65536\nmax_item_bytes = 65536\nmax_string_length = 2000000\n"),
    );
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for tool in ["web__echo", "local__echo"] {
        let big = c.tool(1, tool, json!({"text": "a".repeat(1_000_000)})).await;
        assert!(big.get("error").is_some(), "{tool}: {}", &big.to_string()[..200.min(big.to_string().len())]);
        let fits = c.tool(2, tool, json!({"text": "b".repeat(100_000)})).await;
        let text = text_of(&fits);
        assert!(text.len() <= 65536 && text.ends_with("over the size limit]"), "{tool}: {}", text.len());
        assert_eq!(text_of(&c.tool(3, tool, json!({"text": "small"})).await), "small", "{tool}");
    }
}

#[tokio::test]
async fn hostile_upstreams_crash_hang_and_garbage() {
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), "call_timeout_secs = 2"));
    let mut c = Client::new(&w.url);
    c.initialize().await;

    // garbage on stdout is skipped; the call still answers
    assert_eq!(text_of(&c.tool(1, "garbage", json!({})).await), "after garbage");
    // a crash mid-call is a clear error, and the next call reconnects
    let a = c.tool(2, "crash", json!({})).await;
    assert!(a["error"]["message"].as_str().unwrap().contains("upstream fx closed"), "{a}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(text_of(&c.tool(3, "echo", json!({"text": "back"})).await), "back");
    // a call that never answers times out with a clear error
    let started = std::time::Instant::now();
    let a = c.tool(4, "hang", json!({})).await;
    assert!(a["error"]["message"].as_str().unwrap().contains("timed out"), "{a}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(text_of(&c.tool(5, "echo", json!({"text": "alive"})).await), "alive");
    // stderr of the child went to Warden's log, not to the client
    assert!(w.log().contains("crash tool called"), "child stderr not logged");
}

#[tokio::test]
async fn client_cancellation_ends_the_stream_without_a_response() {
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let hang = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "hang", "arguments": {}}});
    let post = c.post(&hang);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.post(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "test"}})).await
    };
    let (r, n) = tokio::time::timeout(Duration::from_secs(10), futures::future::join(post, cancel))
        .await
        .expect("stream must end");
    assert_eq!(n.status, 202);
    assert_eq!(r.status, 200);
    assert!(r.answer(7).is_none(), "a cancelled request gets no response: {}", r.raw);
    assert_eq!(text_of(&c.tool(8, "echo", json!({"text": "ok"})).await), "ok");
}

#[tokio::test]
async fn sse_resumption_replays_only_the_same_stream() {
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    // open a slow call's stream, read only the priming event, then disconnect
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 400}, "_meta": {"progressToken": "p"}}});
    let mut resp = c.post_stream(&body).await;
    let first = resp.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.starts_with("id: ") && first.contains("retry: "), "priming event: {first:?}");
    let prime_id = first.lines().next().unwrap().trim_start_matches("id: ").to_string();
    drop(resp);
    // another request's stream meanwhile
    assert_eq!(text_of(&c.tool(10, "echo", json!({"text": "other"})).await), "other");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = c.request(reqwest::Method::GET).header("last-event-id", &prime_id).send().await.unwrap();
    let r = Client::read(r).await;
    assert_eq!(r.status, 200);
    assert_eq!(text_of(r.answer(9).expect("replayed answer")), "slept 400 ms");
    assert!(
        r.messages.iter().all(|m| m.get("id") != Some(&json!(10))),
        "another stream's message was replayed: {}",
        r.raw
    );
    // an event id of another session is unknown here
    let mut other = Client::new(&w.url);
    other.initialize().await;
    let r = other
        .request(reqwest::Method::GET)
        .header("last-event-id", &prime_id)
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap();
    let mut r = r;
    let chunk = tokio::time::timeout(Duration::from_millis(400), r.chunk()).await;
    if let Ok(Ok(Some(b))) = chunk {
        assert!(!String::from_utf8_lossy(&b).contains("slept"), "cross-session replay");
    }
}

#[tokio::test]
async fn federation_prefixes_routes_and_withholds_collisions() {
    let fx = harness::fixture_http();
    let ups = format!(
        "{}\n[[upstream]]\nname = \"web\"\ntransport = \"http\"\nurl = {:?}\n",
        fixture_stdio_upstream("local", None, ""),
        fx.url
    );
    let w = warden("", &ups);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let tools = c.call(1, "tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"local__echo") && names.contains(&"web__echo"), "{names:?}");
    assert!(!names.contains(&"echo"));
    assert_eq!(text_of(&c.tool(2, "web__echo", json!({"text": "via http"})).await), "via http");
    assert_eq!(text_of(&c.tool(3, "local__echo", json!({"text": "via stdio"})).await), "via stdio");
    // resources are namespaced and readable through the namespaced URI
    let res = c.call(4, "resources/list", json!({})).await;
    let uris: Vec<&str> =
        res["result"]["resources"].as_array().unwrap().iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert!(uris.contains(&"warden://web/test://static-text"), "{uris:?}");
    let read = c.call(5, "resources/read", json!({"uri": "warden://local/test://template/42/data"})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], "warden://local/test://template/42/data", "{read}");
    let p = c
        .call(
            6,
            "prompts/get",
            json!({"name": "web__test_prompt_with_arguments", "arguments": {"arg1": "a", "arg2": "b"}}),
        )
        .await;
    assert!(p["result"]["messages"][0]["content"]["text"].as_str().unwrap().contains("arg1='a'"));
    let comp = c.call(7, "completion/complete", json!({"ref": {"type": "ref/prompt", "name": "local__test_prompt_with_arguments"}, "argument": {"name": "arg1", "value": ""}})).await;
    assert!(comp["result"]["completion"].is_object(), "{comp}");

    // two un-namespaced copies of the same server collide: both are withheld and reported
    let ups = format!("{}{}", fixture_stdio_upstream("a", Some(""), ""), fixture_stdio_upstream("b", Some(""), ""));
    let w2 = warden("", &ups);
    let mut c2 = Client::new(&w2.url);
    c2.initialize().await;
    let tools = c2.call(1, "tools/list", json!({})).await;
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 0, "{tools}");
    assert_eq!(c2.tool(2, "echo", json!({"text": "x"})).await["error"]["code"], -32602);
    let mut ready = Value::Null;
    for _ in 0..50 {
        ready = reqwest::get(w2.url.replace("/mcp", "/readyz")).await.unwrap().json().await.unwrap();
        if ready["collisions"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready["collisions"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().contains("tools:echo")),
        "{ready}"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let w = warden("", &fixture_stdio_upstream("fx", None, ""));
    let base = w.url.replace("/mcp", "");
    let h: Value = reqwest::get(format!("{base}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let mut ready = false;
    for _ in 0..100 {
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        if r.status().as_u16() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready);
    // an upstream that cannot start keeps readiness false
    let bad = "[[upstream]]\nname = \"broken\"\ntransport = \"stdio\"\ncommand = \"/nonexistent/server\"\n";
    let w2 = warden("", bad);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = reqwest::get(w2.url.replace("/mcp", "/readyz")).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["upstreams"]["broken"], "unavailable");
}

#[test]
fn check_reports_precise_config_errors() {
    let dir = std::env::temp_dir().join(format!("warden-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: &str| {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        let o = Command::new(bin("warden")).args(["check", "--config"]).arg(&p).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout))
    };
    let good = fixture_stdio_upstream("fx", None, "");
    let (ok, out) = run(&good);
    assert!(ok, "{out}");
    let (ok, out) = run(&good.replace("args =", "argz ="));
    assert!(!ok);
    assert!(out.contains("c.toml:5:1: unknown field `argz`, expected one of"), "{out}");
    let (ok, out) = run(&format!("[listen]\naddr = \"0.0.0.0:8080\"\n{good}"));
    assert!(!ok && out.contains("refusing to bind non-loopback"), "{out}");
}

#[tokio::test]
async fn stdio_mode_serves_one_client() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = std::env::temp_dir().join(format!("warden-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("w.toml"), fixture_stdio_upstream("fx", Some(""), "") + harness::ALLOW_ALL).unwrap();
    let mut child = tokio::process::Command::new(bin("warden"))
        .args(["stdio", "--config"])
        .arg(dir.join("w.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let msgs = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": harness::init_params()}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "over stdio"}}}),
    ];
    for m in &msgs {
        stdin.write_all(format!("{m}\n").as_bytes()).await.unwrap();
    }
    stdin.write_all(b"not json\n").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line()).await.unwrap().unwrap().unwrap();
        got.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(got.iter().find(|m| m["id"] == 1).unwrap()["result"]["serverInfo"]["name"], "warden");
    assert_eq!(text_of(got.iter().find(|m| m["id"] == 2).unwrap()), "over stdio");
    // A parse error has no id to name: the member is absent (MCP's schema), never `null`, which
    // the official TypeScript SDK rejects.
    let parse_error = got.iter().find(|m| m.get("id").is_none()).expect("an error without id");
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    assert!(got.iter().all(|m| m.get("id") != Some(&Value::Null)), "{got:?}");
    drop(stdin);
    let status =
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits when stdin closes").unwrap();
    assert!(status.success());
}

/// Child processes of `pid` (all threads), from /proc.
fn child_count(pid: u32) -> usize {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        n += c.split_whitespace().count();
    }
    n
}

#[tokio::test]
async fn idle_sessions_open_no_upstream_until_used() {
    let w = warden("", &fixture_stdio_upstream("fx", Some(""), ""));
    let pid = w.child.id();
    let base = w.url.replace("/mcp", "/readyz");
    for _ in 0..100 {
        if reqwest::get(&base).await.unwrap().status().as_u16() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(child_count(pid), 1, "only the control connection's child");
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = Client::new(&w.url);
        let init = c.initialize().await;
        assert!(init["capabilities"]["tools"].is_object(), "capabilities known without connecting: {init}");
        clients.push(c);
    }
    assert_eq!(child_count(pid), 1, "idle sessions spawned upstream processes");
    assert_eq!(text_of(&clients[0].tool(1, "echo", json!({"text": "first use"})).await), "first use");
    assert_eq!(child_count(pid), 2, "first use connects exactly this session's upstream");
    let r = clients[0].request(reqwest::Method::DELETE).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut n = child_count(pid);
    for _ in 0..50 {
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = child_count(pid);
    }
    assert_eq!(n, 1, "closing the session ends its child");
}

/// Issue 19 finding 13, issue 20 finding 11: an upstream's stderr (or any field a client or
/// upstream controls) cannot forge or hide a line of the text log: carriage returns and escape
/// sequences are written out as escapes.
#[tokio::test]
async fn the_text_log_cannot_be_forged_through_upstream_stderr() {
    let fixture = bin("warden-fixture").display().to_string();
    let script = format!(
        "printf 'hello\\r2026-12-06T00:00:00.000000Z  INFO warden: FORGED admin token rotated\\033[2K\\n' >&2; exec {fixture} --stdio"
    );
    let up = format!(
        "[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n[upstream.sandbox]\nread_only = [{fixture:?}]\n"
    );
    let w = warden("", &up);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    assert_eq!(text_of(&c.tool(1, "echo", json!({"text": "x"})).await), "x");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !w.log().contains("FORGED") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = w.log();
    let line = log.lines().find(|l| l.contains("FORGED")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("upstream stderr") && line.contains("hello\\r2026"), "{line}");
    assert!(!log.contains('\r') && !log.contains('\x1b'), "raw control characters in the log");
}
