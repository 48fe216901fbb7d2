//! Warden's HTTP/1.1 client for the POSTs to a plain-`http://` upstream: a bounded pool of
//! keep-alive connections, each driven on the task of the call using it.
//!
//! A general client (reqwest over hyper-util's pool) runs every connection as a task of its
//! own: a call hands its request to that task through a channel and is woken again for the
//! answer, two wake-ups and often two thread hops per call. Here the call's own task writes the
//! request, reads the answer and drives the connection while it does ([`Driven`]); a finished
//! answer hands the connection back to the pool, an abandoned one closes it (which is how a
//! stateless call is cancelled).
//!
//! One pool per upstream URL, shared by the sessions' transports; an idle connection is reused
//! by the thread that used it last (each connection thread has its own runtime).
//!
//! Defends against: an upstream that closes idle connections (an idle connection is checked
//! before use, and a request the connection never took is sent again on a new one), a pool that
//! grows without bound ([`MAX_IDLE`] per URL, the longest idle dropped for a newer one;
//! connections idle past [`IDLE_FOR`] are dropped at the next checkout or checkin),
//! a name that resolves to a metadata or link-local address ([`crate::dns::usable`], as for
//! every outbound client), a connect that hangs (the connect timeout).
//! Does not: speak TLS or go through an HTTP proxy (an `https://` upstream, a URL with
//! credentials, or any upstream while a proxy is set in the environment keeps the general
//! client), retry a request the upstream may have received, or close idle connections on a
//! timer (the next use of the pool does).

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Most idle connections kept per upstream.
pub const MAX_IDLE: usize = 64;
/// An idle connection unused this long is closed rather than reused.
pub const IDLE_FOR: Duration = Duration::from_secs(55);

/// An answer's body, from either client.
pub type AnswerBody = UnsyncBoxBody<Bytes, String>;
/// An upstream's answer, from either client.
pub type Answer = Response<AnswerBody>;

/// A reqwest answer as an [`Answer`].
pub fn from_reqwest(r: reqwest::Response) -> Answer {
    Response::<reqwest::Body>::from(r)
        .map(|b| b.map_err(|e| format!("reading body: {}", e.without_url())).boxed_unsync())
}

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;
type Sender = SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    conn: Conn,
    since: Instant,
    /// The thread whose runtime the connection is registered with (a connection thread's,
    /// `crate::conn_threads`): reused there first, so its wake-ups stay on that thread.
    thread: std::thread::ThreadId,
}

/// The pools, one per upstream URL, shared by every session's transport (as one general client's
/// pool was); an entry goes when its last transport does.
static POOLS: std::sync::LazyLock<Mutex<std::collections::HashMap<String, Weak<Pool>>>> =
    std::sync::LazyLock::new(Default::default);

/// The pool of one upstream.
pub struct Pool {
    host: String,
    port: u16,
    /// `host[:port]`, the `Host` header.
    authority: String,
    /// Path and query, the request target.
    target: String,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    me: Weak<Pool>,
}

impl Pool {
    /// The pool for `url` (shared with other transports to the same URL), or `None` when this
    /// client does not serve it: not plain `http://`, credentials in the URL (the general client
    /// turns them into Basic authentication), or a proxy configured in the environment.
    pub fn for_url(url: &reqwest::Url, connect_timeout: Duration) -> Option<Arc<Pool>> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() || proxy_configured() {
            return None;
        }
        let mut pools = POOLS.lock();
        pools.retain(|_, p| p.strong_count() > 0);
        if let Some(p) = pools.get(url.as_str()).and_then(Weak::upgrade) {
            return Some(p);
        }
        let p = Pool::new(url, connect_timeout)?;
        pools.insert(url.as_str().to_string(), Arc::downgrade(&p));
        Some(p)
    }

    fn new(url: &reqwest::Url, connect_timeout: Duration) -> Option<Arc<Pool>> {
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Some(Arc::new_cyclic(|me| Pool {
            host,
            port,
            authority,
            target,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            me: me.clone(),
        }))
    }

    /// POST `body` with `headers`; the answer's body drives its connection as it is read.
    pub async fn post(&self, headers: &HeaderMap, body: Bytes) -> Result<Answer, String> {
        let build = || {
            let mut req = Request::post(self.target.as_str())
                .body(Full::new(body.clone()))
                .map_err(|e| format!("request: {e}"))?;
            *req.headers_mut() = headers.clone();
            // A configured `Host` (virtual hosting) stands; otherwise the URL's.
            if !headers.contains_key(http::header::HOST) {
                let host = http::HeaderValue::from_str(&self.authority).map_err(|_| "bad host")?;
                req.headers_mut().insert(http::header::HOST, host);
            }
            Ok::<_, String>(req)
        };
        // A pooled connection may have been closed by the upstream meanwhile: a request it
        // never took goes again, once, on a new connection.
        let mut req = build()?;
        for fresh in [false, true] {
            let reused = if fresh { None } else { self.checkout() };
            let (mut sender, conn) = match reused {
                Some(c) => c,
                None => self.connect().await?,
            };
            let mut conn = Some(conn);
            if driving(sender.ready(), &mut conn).await.is_err() {
                continue;
            }
            match driving(sender.try_send_request(req), &mut conn).await {
                Ok(resp) => {
                    let Some(conn) = conn else {
                        // Answered just as the connection ended: the body has what there was.
                        return Ok(resp.map(|b| b.map_err(|e| format!("reading body: {e}")).boxed_unsync()));
                    };
                    let pool = self.me.clone();
                    return Ok(
                        resp.map(|body| Driven { body, conn: Some(conn), sender: Some(sender), pool }.boxed_unsync())
                    );
                }
                Err(mut e) => match e.take_message() {
                    Some(again) if !fresh => req = again,
                    _ => return Err(format!("request failed: {}", e.error())),
                },
            }
        }
        Err("request failed: no connection took it".into())
    }

    /// An idle connection of this thread still open, the most recently used first (none of
    /// this thread's: a new one, rather than another thread's wake-ups).
    fn checkout(&self) -> Option<(Sender, Conn)> {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock();
        idle.retain(|c| c.since.elapsed() <= IDLE_FOR && !c.sender.is_closed());
        while let Some(at) = idle.iter().rposition(|c| c.thread == me) {
            let mut c = idle.remove(at);
            // Closed by the upstream while idle: the connection has ended already.
            let waker = futures::task::noop_waker();
            if Pin::new(&mut c.conn).poll(&mut Context::from_waker(&waker)).is_ready() {
                continue;
            }
            return Some((c.sender, c.conn));
        }
        None
    }

    fn checkin(&self, sender: Sender, conn: Conn) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        idle.retain(|c| c.since.elapsed() <= IDLE_FOR);
        if idle.len() >= MAX_IDLE {
            idle.remove(0); // the longest idle makes room
        }
        idle.push(Idle { sender, conn, since: Instant::now(), thread: std::thread::current().id() });
    }

    async fn connect(&self) -> Result<(Sender, Conn), String> {
        let connect = async {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("resolving {}: {e}", self.host))?
                .collect();
            let usable = crate::dns::usable(found.iter().copied());
            if usable.is_empty() {
                return Err(format!("{} resolves to no address Warden may connect to", self.host));
            }
            // Each address gets its share of the time (an unreachable IPv6 address must not take
            // all of it from the IPv4 one after it), at least a second.
            let each = (self.connect_timeout / usable.len() as u32).max(Duration::from_secs(1));
            let mut last = String::new();
            for a in usable {
                match tokio::time::timeout(each, TcpStream::connect(a)).await {
                    Ok(Ok(s)) => return Ok(s),
                    Ok(Err(e)) => last = format!("connecting to {a}: {e}"),
                    Err(_) => last = format!("connecting to {a}: timed out"),
                }
            }
            Err(last)
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.connect_timeout))??;
        let _ = stream.set_nodelay(true);
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake: {e}"))
    }
}

fn proxy_configured() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Poll `fut` to its end while driving `conn` on this task. A connection that ends meanwhile
/// is dropped (`None`), which ends what `fut` waits for: hyper then gives back a request it
/// never wrote ([`hyper::client::conn::TrySendError::take_message`]).
async fn driving<F: Future>(fut: F, conn: &mut Option<Conn>) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        match conn.as_mut().map(|c| Pin::new(c).poll(cx)) {
            Some(Poll::Ready(r)) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection failed");
                }
                *conn = None;
            }
            Some(Poll::Pending) | None => return Poll::Pending,
        }
    })
    .await
}

/// An answer's body that drives its connection while it is read, and gives the connection
/// back to the pool once it has been read to the end (dropped before: the connection closes).
struct Driven {
    body: Incoming,
    conn: Option<Conn>,
    sender: Option<Sender>,
    pool: Weak<Pool>,
}

impl Drop for Driven {
    /// An empty answer (202 to a notification) is not read, but its connection is reusable.
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            if let (Some(sender), Some(conn), Some(pool)) = (self.sender.take(), self.conn.take(), self.pool.upgrade())
            {
                pool.checkin(sender, conn);
            }
        }
    }
}

impl Body for Driven {
    type Data = Bytes;
    type Error = String;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, String>>> {
        let this = self.get_mut();
        if let Some(c) = this.conn.as_mut() {
            // Ended (closed or failed): the body learns it from its own channel.
            if Pin::new(c).poll(cx).is_ready() {
                this.conn = None;
                this.sender = None;
            }
        }
        let out = Pin::new(&mut this.body).poll_frame(cx).map_err(|e| format!("reading body: {e}"));
        if let Poll::Ready(None) = out {
            if let (Some(sender), Some(conn), Some(pool)) = (this.sender.take(), this.conn.take(), this.pool.upgrade())
            {
                pool.checkin(sender, conn);
            }
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
