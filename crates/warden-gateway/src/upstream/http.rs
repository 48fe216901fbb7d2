//! A remote Streamable HTTP upstream: Warden's own session with it (`Mcp-Session-Id`), JSON or
//! SSE answers, resumption of a broken answer stream with `Last-Event-ID`, and the standalone
//! GET stream for messages the server sends on its own.
//!
//! Defends against: a server that sends unbounded SSE events (per-event cap), one that drops
//! streams (bounded resumption attempts, then the call fails), one whose session expires (the
//! connection is marked closed and re-established on next use).
//! A stateless (2026-07-28) upstream gets no session: each POST carries `MCP-Protocol-Version`,
//! `Mcp-Method` and `Mcp-Name` (base64 sentinel form where the value needs it), a call is
//! cancelled by closing its answer stream, and one `subscriptions/listen` POST stream stands in
//! for the GET stream.
//!
//! A 2026 tool's `x-mcp-header` arguments go along as `Mcp-Param-*` headers, from the
//! annotations of the tools this connection listed (a tool with invalid ones is withheld by
//! the registry and never called).
//!
//! Does not (yet) speak the legacy HTTP+SSE transport of 2024-11-05.

use super::h1::{self, Answer, AnswerBody};
use super::{Incoming, IncomingTx, Spec};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warden_protocol::jsonrpc::{self, Id, Message, DEFAULT_MAX_DEPTH};
use warden_protocol::param_headers::{header_params, param_value, HeaderParam};
use warden_protocol::sse;

const MAX_RESUME: u32 = 5;
/// Most tools whose `x-mcp-header` annotations one connection keeps.
const MAX_TOOLS: usize = 10_000;
/// Longest wait for a TCP connection to the upstream (as the general client's).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpTransport {
    name: String,
    /// Parsed once: reqwest would parse a string URL (IDNA included) on every request.
    url: Result<reqwest::Url, String>,
    client: reqwest::Client,
    /// The POSTs' own client, for a plain-`http://` upstream ([`h1`]).
    h1: Option<Arc<h1::Pool>>,
    headers: HeaderMap,
    /// Whose credential goes up (`credential.rs`).
    credential: super::credential::Credential,
    session: Mutex<Option<HeaderValue>>,
    version: Mutex<Option<HeaderValue>>,
    incoming: IncomingTx,
    standalone: Mutex<Option<tokio::task::AbortHandle>>,
    /// Speaking the stateless revision.
    modern: AtomicBool,
    /// Answer streams being read, by request id (closing one cancels a stateless call).
    readers: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    /// The `subscriptions/listen` stream of a stateless upstream.
    listener: Mutex<Option<tokio::task::AbortHandle>>,
    /// `x-mcp-header` annotations of the tools listed, by the upstream's tool name.
    header_params: Mutex<HashMap<String, Vec<HeaderParam>>>,
    /// Largest JSON body or SSE event read ([`Spec::max_message_bytes`]).
    max_message: usize,
}

impl HttpTransport {
    /// `on_behalf`: the caller this connection serves (a session's), or none (Warden's own).
    pub fn new(
        spec: &Spec,
        client: reqwest::Client,
        incoming: IncomingTx,
        on_behalf: Option<&warden_policy::Principal>,
    ) -> Arc<Self> {
        let mut headers = HeaderMap::new();
        for (k, v) in &spec.headers {
            match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                (Ok(k), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.insert(k, v);
                }
                _ => {
                    tracing::error!(upstream = %spec.name, header = %k, "invalid header name or value; not sent")
                }
            }
        }
        let url = reqwest::Url::parse(&spec.url).map_err(|e| format!("invalid upstream URL: {e}"));
        let h1 = url.as_ref().ok().and_then(|u| h1::Pool::for_url(u, CONNECT_TIMEOUT.min(spec.connect_timeout)));
        Arc::new(HttpTransport {
            name: spec.name.clone(),
            url,
            client,
            h1,
            headers,
            credential: super::credential::Credential::new(spec, on_behalf),
            session: Mutex::new(None),
            version: Mutex::new(None),
            incoming,
            standalone: Mutex::new(None),
            modern: AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            header_params: Mutex::new(HashMap::new()),
            max_message: spec.max_message_bytes,
        })
    }

    pub fn set_protocol_version(&self, v: &str) {
        *self.version.lock() = HeaderValue::from_str(v).ok();
    }

    /// Speak the stateless revision (or stop: the `initialize` handshake follows).
    pub fn set_modern(&self, on: bool) {
        self.modern.store(on, Ordering::Relaxed);
        *self.version.lock() = if on { HeaderValue::from_str(super::modern::REVISION).ok() } else { None };
    }

    pub fn is_modern(&self) -> bool {
        self.modern.load(Ordering::Relaxed)
    }

    /// Cancel a stateless call: stop reading (and so close) its answer stream.
    pub fn cancel(&self, id: &Id) {
        if let Some(h) = self.readers.lock().remove(id) {
            h.abort();
        }
    }

    /// The stateless revision's standard headers for `msg`; a value that cannot be a header
    /// fails the request (as the general client's builder did), it is never dropped silently.
    fn standard_headers(&self, h: &mut HeaderMap, msg: &Message) -> Result<(), String> {
        if !self.is_modern() {
            return Ok(());
        }
        let (method, params) = match msg {
            Message::Request { method, params, .. } | Message::Notification { method, params } => (method, params),
            _ => return Ok(()),
        };
        let mut put = |k: &str, v: &str| match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            (Ok(k), Ok(v)) => {
                h.append(k, v);
                Ok(())
            }
            _ => Err(format!("cannot send header {k}: not a valid header")),
        };
        put("mcp-method", method)?;
        if let Some(name) = warden_protocol::modern::name_of(method, params.as_ref()) {
            put("mcp-name", &warden_protocol::modern::encode_header_value(name))?;
            if method == "tools/call" {
                let args = params.as_ref().and_then(|p| p.get("arguments"));
                for p in self.header_params.lock().get(name).into_iter().flatten() {
                    if let Ok(Some(v)) = param_value(args, &p.path) {
                        put(&p.header(), &warden_protocol::modern::encode_header_value(&v.text))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Learn the `x-mcp-header` annotations of a page of `tools/list` (bounded: a server
    /// cannot grow the map past [`MAX_TOOLS`] names).
    pub fn learn_tools(&self, tools: &[serde_json::Value]) {
        let mut known = self.header_params.lock();
        for t in tools {
            let Some(name) = t.get("name").and_then(serde_json::Value::as_str) else { continue };
            let params = t.get("inputSchema").map(header_params).and_then(Result::ok).unwrap_or_default();
            if params.is_empty() {
                known.remove(name);
            } else if known.len() < MAX_TOOLS || known.contains_key(name) {
                known.insert(name.to_string(), params);
            }
        }
    }

    /// The latest request's caller (same caller, maybe a fresher token).
    pub fn offer(&self, p: &warden_policy::Principal) {
        self.credential.offer(p);
    }

    /// Which credential this connection presents (for the audit record; never its value).
    pub fn credential(&self) -> Option<String> {
        self.credential.label()
    }

    /// This upstream's credentials, session and version headers.
    async fn head(&self) -> Result<HeaderMap, String> {
        let mut h = self.headers.clone();
        if let Some(v) = self.credential.header(&self.client).await? {
            h.insert(http::header::AUTHORIZATION, v);
        }
        if let Some(s) = self.session.lock().clone() {
            h.insert("mcp-session-id", s);
        }
        if let Some(v) = self.version.lock().clone() {
            h.insert("mcp-protocol-version", v);
        }
        if let Ok(tp) = crate::trace::TRACEPARENT.try_with(|t| HeaderValue::from_str(t)) {
            h.insert("traceparent", tp.map_err(|_| "bad traceparent")?);
        }
        Ok(h)
    }

    /// A request with this upstream's credentials, session and version headers.
    async fn request(&self, method: reqwest::Method) -> Result<reqwest::RequestBuilder, String> {
        Ok(self.client.request(method, self.url.clone()?).headers(self.head().await?))
    }

    /// POST `msg`, on this transport's own client where it has one.
    async fn post(&self, msg: &Message) -> Result<Answer, String> {
        let mut h = self.head().await?;
        self.standard_headers(&mut h, msg)?;
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = bytes::Bytes::from(msg.to_json());
        match &self.h1 {
            Some(pool) => pool.post(&h, body).await,
            None => {
                let r = self.client.post(self.url.clone()?).headers(h).body(body).send().await;
                r.map(h1::from_reqwest).map_err(|e| format!("request failed: {}", e.without_url()))
            }
        }
    }

    fn deliver(&self, msg: Message, related: Option<Id>) {
        let _ = self.incoming.send(Incoming::Message { msg, related });
    }

    /// Tell the waiting call that its request failed at the HTTP level.
    fn fail(&self, related: &Option<Id>, text: String) {
        tracing::warn!(upstream = %self.name, error = %text, "upstream HTTP request failed");
        if let Some(id) = related {
            self.deliver(
                Message::error(id.clone(), jsonrpc::INTERNAL_ERROR, format!("upstream {}: {text}", self.name)),
                None,
            );
        }
    }

    pub async fn send(self: &Arc<Self>, msg: Message) -> Result<(), String> {
        let related = match &msg {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        let is_init = msg.method() == Some("initialize");
        let resp = self.post(&msg).await?;
        let status = resp.status();
        if is_init {
            if let Some(s) = resp.headers().get("mcp-session-id") {
                *self.session.lock() = Some(s.clone());
            }
        }
        if status == reqwest::StatusCode::NOT_FOUND && self.session.lock().is_some() {
            let _ = self.incoming.send(Incoming::Closed("upstream session expired (404)".into()));
            return Err("upstream session expired".into());
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.credential.refused().await;
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            let challenge = (resp.headers().get_all(http::header::WWW_AUTHENTICATE).iter())
                .filter_map(|v| v.to_str().ok())
                .find_map(super::link::challenge);
            if let Some(c) = challenge.filter(|c| c.error.as_deref() == Some("insufficient_scope")) {
                self.credential.insufficient(c.scope.as_deref().unwrap_or_default());
            }
        }
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if !status.is_success() {
            // A JSON-RPC error for this request says more than the status (the stateless
            // revision answers -32601 with 404, -32020/-32021/-32022 with 400).
            let error = match (&related, ct.starts_with("application/json")) {
                (Some(id), true) => match read_capped(resp, self.max_message)
                    .await
                    .map(|b| Message::parse(&b, DEFAULT_MAX_DEPTH))
                {
                    Ok(Ok(Message::Error { id: got, error })) if &got == id => Some(Message::Error { id: got, error }),
                    _ => None,
                },
                _ => None,
            };
            match error {
                Some(m) => self.deliver(m, related),
                None => self.fail(&related, format!("HTTP {status}")),
            }
            return Ok(());
        }
        if status == reqwest::StatusCode::ACCEPTED || related.is_none() {
            return Ok(());
        }
        if ct.starts_with("text/event-stream") {
            let me = self.clone();
            match related.clone().filter(|_| self.is_modern()) {
                // Held while spawning, so the reader cannot remove itself before it is added.
                Some(id) => {
                    let mut readers = self.readers.lock();
                    let key = id.clone();
                    let task = tokio::spawn(async move {
                        me.clone().read_answer_stream(resp, related).await;
                        me.readers.lock().remove(&id);
                    });
                    readers.insert(key, task.abort_handle());
                }
                None => {
                    tokio::spawn(async move { me.read_answer_stream(resp, related).await });
                }
            }
        } else if ct.starts_with("application/json") {
            let body = match read_capped(resp, self.max_message).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(upstream = %self.name, error = %e, "upstream answer refused");
                    self.fail(&related, e);
                    return Ok(());
                }
            };
            match Message::parse(&body, DEFAULT_MAX_DEPTH) {
                Ok(m) => self.deliver(m, related),
                Err(e) => self.fail(&related, format!("invalid JSON-RPC answer: {e}")),
            }
        } else {
            self.fail(&related, format!("unexpected content type {ct:?}"));
        }
        Ok(())
    }

    /// Read SSE events of one request's answer; if the stream ends before the answer, resume
    /// it with `Last-Event-ID` (bounded attempts).
    async fn read_answer_stream(self: Arc<Self>, first: Answer, related: Option<Id>) {
        let mut resp = first;
        let mut last_id: Option<String> = None;
        let mut retry = Duration::from_millis(1000);
        for attempt in 0..=MAX_RESUME {
            let (answered, id, r) = self.read_events(resp, &related).await;
            if answered {
                return;
            }
            if id.is_some() {
                last_id = id;
            }
            if let Some(r) = r {
                retry = Duration::from_millis(r.min(30_000));
            }
            let Some(last) = last_id.clone() else { break };
            if attempt == MAX_RESUME {
                break;
            }
            tokio::time::sleep(retry).await;
            let rb = match self.request(reqwest::Method::GET).await {
                Ok(rb) => rb,
                Err(e) => {
                    self.fail(&related, format!("resuming the answer stream: {e}"));
                    return;
                }
            };
            match rb.header(ACCEPT, "text/event-stream").header("last-event-id", last).send().await {
                Ok(r) if r.status().is_success() => resp = h1::from_reqwest(r),
                Ok(r) => {
                    self.fail(&related, format!("resuming the answer stream: HTTP {}", r.status()));
                    return;
                }
                Err(e) => {
                    self.fail(&related, format!("resuming the answer stream: {}", e.without_url()));
                    return;
                }
            }
        }
        self.fail(&related, "answer stream ended without a response".into());
    }

    /// Returns (the answer to `related` arrived, last event id, retry hint).
    async fn read_events(&self, resp: Answer, related: &Option<Id>) -> (bool, Option<String>, Option<u64>) {
        let mut dec = sse::Decoder::new(self.max_message);
        let mut body = resp.into_body();
        let mut retry = None;
        while let Some(chunk) = next_data(&mut body).await {
            let Ok(chunk) = chunk else { break };
            let events = match dec.feed(&chunk) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(upstream = %self.name, error = %e, "upstream SSE event too large; stream dropped");
                    break;
                }
            };
            for ev in events {
                if ev.retry.is_some() {
                    retry = ev.retry;
                }
                if ev.data.trim().is_empty() || ev.event.as_deref().is_some_and(|e| e != "message") {
                    continue;
                }
                match Message::parse(ev.data.as_bytes(), DEFAULT_MAX_DEPTH) {
                    Ok(m) => {
                        let done = matches!((&m, related), (Message::Response { id, .. } | Message::Error { id, .. }, Some(r)) if id == r);
                        self.deliver(m, related.clone());
                        if done {
                            return (true, dec.last_event_id().map(str::to_string), retry);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %self.name, error = %e, "invalid message in upstream SSE stream; ignored")
                    }
                }
            }
        }
        (false, dec.last_event_id().map(str::to_string), retry)
    }

    /// Open the GET stream for server-initiated messages (reconnecting with backoff).
    pub fn start_standalone_stream(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut failures = 0u32;
            loop {
                let Some(t) = me.upgrade() else { return };
                let Ok(rb) = t.request(reqwest::Method::GET).await else { break };
                let mut rb = rb.header(ACCEPT, "text/event-stream");
                if let Some(l) = &last {
                    rb = rb.header("last-event-id", l.clone());
                }
                let delay = match rb.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => return,
                    Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                        let _ = t.incoming.send(Incoming::Closed("upstream session expired (404)".into()));
                        return;
                    }
                    Ok(r) if r.status().is_success() => {
                        failures = 0;
                        let (_, id, retry) = t.read_events(h1::from_reqwest(r), &None).await;
                        if id.is_some() {
                            last = id;
                        }
                        Duration::from_millis(retry.unwrap_or(1000).min(30_000))
                    }
                    _ => {
                        failures += 1;
                        if failures > 8 {
                            tracing::warn!(upstream = %t.name, "standalone stream unavailable; giving up");
                            return;
                        }
                        Duration::from_millis(250 << failures.min(7))
                    }
                };
                drop(t);
                tokio::time::sleep(delay).await;
            }
        });
        *self.standalone.lock() = Some(task.abort_handle());
    }

    /// Open (or renew) a stateless upstream's `subscriptions/listen` stream with `params`
    /// (`None`: close it); reconnected with backoff while the transport lives.
    pub fn listen(self: &Arc<Self>, params: Option<serde_json::Value>) {
        // One lock hold from the old stream's end to the new one's start: two renewals at once
        // cannot leave a stream running that nothing stops.
        let mut slot = self.listener.lock();
        if let Some(h) = slot.take() {
            h.abort();
        }
        let Some(params) = params else { return };
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            for n in 0u64.. {
                let Some(t) = me.upgrade() else { return };
                let msg = Message::Request {
                    id: Id::Str(format!("warden-listen-{n}")),
                    method: "subscriptions/listen".into(),
                    params: Some(params.clone()),
                };
                let sent = t.post(&msg).await;
                let delay = match sent {
                    Ok(r)
                        if r.status().is_success()
                            && r.headers()
                                .get(CONTENT_TYPE)
                                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) =>
                    {
                        let started = std::time::Instant::now();
                        t.read_events(r, &None).await;
                        // A stream that ends at once, again and again, is not listened to forever.
                        if started.elapsed() < Duration::from_secs(5) {
                            failures += 1;
                        } else {
                            failures = 0;
                        }
                        if failures > 8 {
                            tracing::warn!(upstream = %t.name, "subscriptions/listen keeps ending; giving up");
                            return;
                        }
                        Duration::from_millis(1000 << failures.min(5))
                    }
                    // An answer that is not a stream (an error, or the end of the subscription).
                    Ok(r) if r.status().is_success() => {
                        tracing::warn!(upstream = %t.name, "upstream answered subscriptions/listen without a stream; no change notifications");
                        return;
                    }
                    Ok(r) if r.status().is_client_error() => {
                        tracing::warn!(upstream = %t.name, status = %r.status(), "upstream refuses subscriptions/listen; no change notifications");
                        return;
                    }
                    _ => {
                        failures += 1;
                        if failures > 8 {
                            tracing::warn!(upstream = %t.name, "subscriptions/listen unavailable; giving up");
                            return;
                        }
                        Duration::from_millis(250 << failures.min(7))
                    }
                };
                drop(t);
                tokio::time::sleep(delay).await;
            }
        });
        *slot = Some(task.abort_handle());
    }

    /// End the session: stop the GET and listen streams and DELETE the session.
    pub async fn close(&self) {
        if let Some(h) = self.standalone.lock().take() {
            h.abort();
        }
        if let Some(h) = self.listener.lock().take() {
            h.abort();
        }
        for (_, h) in self.readers.lock().drain() {
            h.abort();
        }
        if self.session.lock().is_some() {
            if let Ok(rb) = self.request(reqwest::Method::DELETE).await {
                let _ = tokio::time::timeout(Duration::from_secs(2), rb.send()).await;
            }
        }
    }
}

/// The next data of `body` (trailers skipped); `None` at its end.
async fn next_data(body: &mut AnswerBody) -> Option<Result<bytes::Bytes, String>> {
    loop {
        match body.frame().await? {
            Ok(f) => match f.into_data() {
                Ok(d) => return Some(Ok(d)),
                Err(_) => continue,
            },
            Err(e) => return Some(Err(e)),
        }
    }
}

/// A response body, refused past `cap` bytes without buffering more than that.
async fn read_capped(resp: Answer, cap: usize) -> Result<Vec<u8>, String> {
    let over = || format!("the upstream's answer is over {cap} bytes (twice the largest result allowed)");
    let length = resp.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if length.is_some_and(|n| n > cap as u64) {
        return Err(over());
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = next_data(&mut body).await {
        let chunk = chunk?;
        if out.len() + chunk.len() > cap {
            return Err(over());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
