//! Serving one local client over stdin/stdout (`warden stdio`): newline-delimited JSON-RPC.
//! stdout carries only protocol messages; logs go to stderr.
//!
//! Defends against: over-long lines, malformed frames (answered with a JSON-RPC error, never a
//! crash), requests before `initialize`.

use super::{Conn, Service};
use crate::framing::{self, Line};
use crate::rpc::{Calls, Outbound, Peer};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use warden_protocol::jsonrpc::{self, Id, Message};

struct LineSink(mpsc::UnboundedSender<String>);

impl Outbound for LineSink {
    fn send(&self, _stream: Option<u64>, msg: Message) -> bool {
        let mut line = msg.to_json();
        line.push('\n');
        self.0.send(line).is_ok()
    }
}

/// Serve until the input closes; then close the session.
pub async fn serve<R, W>(svc: Arc<dyn Service>, input: R, output: W, max_depth: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut output = output;
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if output.write_all(line.as_bytes()).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let sink: Arc<dyn Outbound> = Arc::new(LineSink(tx));
    let calls = Arc::new(Calls::new("warden-"));
    let mut reader = BufReader::new(input);
    let mut conn: Option<Arc<Conn>> = None;
    loop {
        let bytes = match framing::read_line(&mut reader, framing::MAX_LINE).await? {
            Line::Eof => break,
            Line::TooLong => {
                sink.send(None, Message::error(Id::Null, jsonrpc::INVALID_REQUEST, "message too large"));
                continue;
            }
            Line::Data(b) if b.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Data(b) => b,
        };
        let msg = match Message::parse(&bytes, max_depth) {
            Ok(m) => m,
            Err(e) => {
                sink.send(None, e.to_reply());
                continue;
            }
        };
        match (msg, &conn) {
            (Message::Request { id, method, params }, None) if method == "initialize" => {
                let params = params.unwrap_or_else(|| serde_json::json!({}));
                let peer = Peer::new(sink.clone(), calls.clone(), None);
                match svc
                    .initialize(
                        params,
                        peer,
                        Arc::new(warden_policy::Principal::local()),
                        super::Origin { session: "stdio".into(), client: None, stateless: false },
                    )
                    .await
                {
                    Ok(init) => {
                        sink.send(None, Message::Response { id, result: init.result });
                        conn = Some(Conn::new(init.session, sink.clone(), calls.clone()));
                    }
                    Err(error) => {
                        sink.send(None, Message::Error { id, error });
                    }
                }
            }
            (Message::Request { id, method, .. }, None) => {
                let text = if method == "ping" { None } else { Some("session not initialized: send initialize first") };
                match text {
                    None => sink.send(None, Message::Response { id, result: serde_json::json!({}) }),
                    Some(t) => sink.send(None, Message::error(id, jsonrpc::INVALID_REQUEST, t)),
                };
            }
            (Message::Request { id, method, .. }, Some(_)) if method == "initialize" => {
                sink.send(None, Message::error(id, jsonrpc::INVALID_REQUEST, "already initialized"));
            }
            (_, None) => {}
            (Message::Request { id, method, params }, Some(c)) => drop(c.request(id, method, params, None, None)),
            (Message::Notification { method, params }, Some(c)) => c.notification(method, params),
            (Message::Response { id, result }, Some(c)) => c.response(id, Ok(result)),
            (Message::Error { id, error }, Some(c)) => c.response(id, Err(error)),
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
    drop(sink);
    // peers held by a closing session may keep the channel open a little longer
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(())
}
