//! Warden's own HTTP/1.1 client to a plain-`http://` upstream (issue 22): connections are kept
//! and reused, and an upstream that closes a connection after answering (without saying so)
//! costs no call. The upstream here is a raw socket server, not hyper: it counts connections
//! and closes them the way a real server's idle timeout does.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use warden_testkit::harness::{warden, Client};

/// A minimal MCP server over HTTP/1.1 keep-alive. With `close_when_idle`, a connection idle
/// for 50 ms is closed (a server's idle timeout), with no `Connection: close` said.
async fn raw_upstream(close_when_idle: bool) -> (String, Arc<AtomicUsize>) {
    let (url, accepted, _) = raw_upstream_with(close_when_idle, false).await;
    (url, accepted)
}

type Heads = Arc<parking_lot::Mutex<Vec<String>>>;

/// [`raw_upstream`]; with `hang_calls`, a `tools/call` is read and never answered. The heads of
/// the POSTs it got are kept.
async fn raw_upstream_with(close_when_idle: bool, hang_calls: bool) -> (String, Arc<AtomicUsize>, Heads) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let heads: Heads = Default::default();
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut counted = false;
                loop {
                    // With `close_when_idle`, a connection idle for 50 ms is closed.
                    let next = read_request(&mut s, &mut buf);
                    let got = if close_when_idle && counted {
                        tokio::time::timeout(std::time::Duration::from_millis(50), next).await.ok().flatten()
                    } else {
                        next.await
                    };
                    let Some((head, body)) = got else { return };
                    if head.starts_with("POST ") {
                        kept.lock().push(head.clone());
                    }
                    // Connections carrying POSTs (the GET stream has one of its own).
                    if head.starts_with("POST ") && !counted {
                        counted = true;
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    if hang_calls && String::from_utf8_lossy(&body).contains("tools/call") {
                        std::future::pending::<()>().await;
                    }
                    let answer = answer(&head, &body);
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted, heads)
}

/// One request (head, body) from `s`, bounded; `None` at the end of the connection.
async fn read_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some((head, body));
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) if buf.len() + n < 1 << 20 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
        }
    }
}

fn answer(head: &str, body: &[u8]) -> String {
    if !head.starts_with("POST ") {
        return "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".into();
    }
    let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".into();
    };
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "raw", "version": "1"}})
        }
        "tools/list" => {
            json!({"tools": [{"name": "echo", "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}}]})
        }
        "tools/call" => {
            json!({"content": [{"type": "text", "text": format!("ok {}", msg["params"]["arguments"]["n"])}]})
        }
        _ => {
            let e =
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}}).to_string();
            return format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{e}",
                e.len()
            );
        }
    };
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: raw-1\r\ncontent-length: {}\r\n\r\n{out}",
        out.len()
    )
}

fn upstream(url: &str) -> String {
    format!("[[upstream]]\nname = \"raw\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {url:?}\nprotocol = \"2025-11-25\"\n")
}

async fn calls(w: &warden_testkit::harness::Proc, n: i64, pause: std::time::Duration) {
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for i in 0..n {
        tokio::time::sleep(pause).await;
        let r = c.tool(10 + i, "echo", json!({"n": i})).await;
        assert_eq!(r["result"]["content"][0]["text"], format!("ok {i}"), "call {i}: {r}");
    }
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (url, accepted) = raw_upstream(false).await;
    let w = warden("", &upstream(&url));
    calls(&w, 30, std::time::Duration::ZERO).await;
    // One client, one call at a time: one connection carries them all (a second may have
    // been opened by the listing that ran beside the handshake).
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "{n} connections for 30 sequential calls");
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_loses_no_call() {
    let (url, accepted) = raw_upstream(true).await;
    let w = warden("", &upstream(&url));
    // Each call finds the connection it used last closed meanwhile.
    calls(&w, 10, std::time::Duration::from_millis(150)).await;
    assert!(accepted.load(Ordering::SeqCst) >= 10, "each pause closed the connection");
}

/// A plain-http upstream that takes a call and never answers it: the call ends with the
/// upstream's call timeout, it does not hang (the answer is read inside the timeout).
#[tokio::test]
async fn a_call_an_http_upstream_never_answers_times_out() {
    let (url, _, _) = raw_upstream_with(false, true).await;
    let w = warden("", &format!("{}call_timeout_secs = 2\n", upstream(&url)));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), c.tool(2, "echo", json!({"n": 1})))
        .await
        .expect("the call hangs past its timeout");
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(r.to_string().contains("timed out"), "{r}");
}

/// A `Host` set by the operator (virtual hosting behind one address) is the only one sent.
#[tokio::test]
async fn a_configured_host_header_is_sent_once() {
    let (url, _, heads) = raw_upstream_with(false, false).await;
    let cfg = format!("{}secret_headers = {{ Host = {{ env = \"WARDEN_TEST_UPSTREAM_HOST\" }} }}\n", upstream(&url));
    let w = warden_testkit::harness::warden_with_env("", &cfg, &[("WARDEN_TEST_UPSTREAM_HOST", "mcp.internal")]);
    calls(&w, 2, std::time::Duration::ZERO).await;
    let heads = heads.lock().clone();
    assert!(heads.len() >= 3, "{heads:?}");
    for h in heads {
        let hosts: Vec<&str> = h.lines().filter(|l| l.to_ascii_lowercase().starts_with("host:")).collect();
        assert_eq!(hosts.len(), 1, "{h}");
        assert!(hosts[0].ends_with("mcp.internal"), "{h}");
    }
}
