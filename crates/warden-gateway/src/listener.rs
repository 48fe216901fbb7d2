//! The listener: accepts TCP connections, speaks HTTP/1.1 and HTTP/2 (TLS 1.3 when configured)
//! with header size and read time limits, tells the router who the client is, and closes
//! connections gently.
//!
//! Defends against: oversized heads (431, which a client still sending can read: see
//! [`linger`]), slow heads (dropped after `read_timeout`), plain-HTTP connections from anyone but
//! the trusted proxies (when Warden sits behind them), and spoofed client addresses: an
//! `X-Forwarded-For` is believed only from a trusted proxy, and only its last entry (the one the
//! proxy wrote); an entry that does not parse makes the proxy itself the client.
//! Connection floods and idle connections: see [`crate::connections`] (a cap in total and per
//! address, an idle timeout for HTTP/1.1 keep-alive and HTTP/2 alike).
//! Does not defend against: a trusted proxy that lies.

use crate::caller::{ClientAddr, PeerCert};
use crate::conn_threads::ConnThreads;
use crate::connections::{Activity, Table, Tracked};
use crate::tls::TlsState;
use axum::Router;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Listener-level limits and transport security.
#[derive(Clone, Default)]
pub struct ListenLimits {
    pub max_header_bytes: usize,
    pub read_timeout: Duration,
    /// Serve HTTPS with this state.
    pub tls: Option<Arc<TlsState>>,
    /// Plain HTTP behind these proxies: connections from anywhere else (but loopback) are
    /// refused, and only these may set `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpAddr>,
    /// Open connections at most, in total and from one peer address (0: no cap).
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// A connection without a request in flight for this long is closed gently (zero: never).
    pub idle_timeout: Duration,
    /// Connection threads ([`crate::conn_threads`]; 0: one per core).
    pub threads: usize,
}

/// The client's address: the peer; behind a trusted proxy, the last `X-Forwarded-For` entry
/// (the one that proxy wrote: entries before it are whatever the client claimed). An entry that
/// does not parse (as `ip`, `ip:port` or `[ipv6]:port`) is not skipped for an earlier one: the
/// proxy itself is then the client.
fn client_addr(peer: IpAddr, trusted: &[IpAddr], h: &http::HeaderMap) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut values = h.get_all("x-forwarded-for").iter();
    let Some(last) = values.next_back() else { return peer };
    let Some(entry) = last.to_str().ok().and_then(|v| v.rsplit(',').next()) else { return peer };
    let entry = entry.trim();
    let parsed = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical());
    parsed.unwrap_or_else(|| {
        tracing::warn!(%peer, "X-Forwarded-For from a trusted proxy does not parse; using the proxy's address");
        peer
    })
}

/// Accept connections until `shutdown`; HTTP/1.1 and HTTP/2 (TLS 1.3 when configured) with
/// header size and header read time limits (over-large heads get 431, slow heads are dropped).
/// Returns the connection threads, still serving what they have: dropping them stops them
/// (after the sessions are closed, so that what they hold closes on a live runtime).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<ConnThreads> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .header_read_timeout(limits.read_timeout);
    builder.http2().max_header_list_size(limits.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let trusted: Arc<[IpAddr]> = limits.trusted_proxies.clone().into();
    let cap = |n: usize| if n == 0 { usize::MAX } else { n };
    let table =
        Table::new(cap(limits.max_connections), cap(limits.max_connections_per_peer), limits.trusted_proxies.clone());
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    let threads = ConnThreads::start(limits.threads)?;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(threads),
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = peer.ip().to_canonical();
        if limits.tls.is_none() && !trusted.is_empty() && !trusted.contains(&peer) && !peer.is_loopback() {
            tracing::warn!(%peer, "refusing a plain-HTTP connection that is not from a trusted proxy");
            continue;
        }
        // Past the cap the connection is closed at once: accepting it (rather than leaving it in
        // the backlog) keeps the backlog for the connections that will fit.
        let place = match table.admit(peer) {
            Ok(p) => p,
            Err(why) => {
                if refused_logged.elapsed() >= Duration::from_secs(10) {
                    tracing::warn!(%peer, open = table.open(), "connection refused: {why} (logged once per 10 s)");
                    refused_logged = Instant::now();
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A second handle on the socket, to close it gently once hyper is done with it.
        let (stream, spare) = match with_spare(stream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot take a connection");
                continue;
            }
        };
        let b = builder.clone();
        let router = router.clone();
        let tls = limits.tls.clone();
        let trusted = trusted.clone();
        let read_timeout = limits.read_timeout;
        let idle = limits.idle_timeout;
        // Served to its end on one connection thread (registered with that thread's runtime).
        let serve = async move {
            let Ok(stream) = TcpStream::from_std(stream) else { return };
            let _place = place;
            let activity = Activity::new();
            let with_info = |cert: Option<PeerCert>| {
                let (router, trusted, activity) = (router.clone(), trusted.clone(), activity.clone());
                tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    // Counted in flight until its answer's body is done (an SSE stream too).
                    let busy = activity.begin();
                    let addr = client_addr(peer, &trusted, req.headers());
                    req.extensions_mut().insert(ClientAddr(addr));
                    if let Some(c) = &cert {
                        req.extensions_mut().insert(c.clone());
                    }
                    let answer = tower::ServiceExt::oneshot(router.clone(), req);
                    async move {
                        let r = answer.await?;
                        Ok::<_, std::convert::Infallible>(r.map(|b| axum::body::Body::new(Tracked::new(b, busy))))
                    }
                })
            };
            match tls {
                None => {
                    let svc = TowerToHyperService::new(with_info(None));
                    let conn = b.serve_connection(TokioIo::new(stream), svc);
                    until_idle(conn, &activity, idle).await;
                }
                Some(tls) => match tls.accept(stream, read_timeout).await {
                    Ok((s, cert)) => {
                        let svc = TowerToHyperService::new(with_info(cert));
                        let conn = b.serve_connection(TokioIo::new(s), svc);
                        until_idle(conn, &activity, idle).await;
                    }
                    Err(e) => tracing::info!(%peer, error = %e, "TLS connection refused"),
                },
            }
            linger(spare).await;
        };
        threads.run(Box::pin(serve));
    }
}

/// Serve `conn` to its end; once it has been idle for `idle` (no request in flight, none begun),
/// shut it down gently (HTTP/2: GOAWAY; HTTP/1.1: close after the current exchange).
async fn until_idle<C>(conn: C, activity: &Activity, idle: Duration)
where
    C: Future + GracefulShutdown,
{
    tokio::pin!(conn);
    if idle.is_zero() {
        let _ = conn.await;
        return;
    }
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(tick) => {
                if activity.idle_for(idle) {
                    conn.as_mut().graceful();
                    let _ = conn.await;
                    return;
                }
            }
        }
    }
}

/// hyper's connections, which can be asked to finish gently.
trait GracefulShutdown {
    fn graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> GracefulShutdown for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// After a connection is done: at most this long to discard what the client still sends…
const LINGER_FOR: Duration = Duration::from_secs(5);
/// …at most this long between two reads…
const LINGER_IDLE: Duration = Duration::from_secs(1);
/// …and at most this much.
const LINGER_BYTES: usize = 64 << 20;

/// The connection's socket, out of this runtime's reactor (for a connection thread's), and a
/// second handle on it (a duplicated descriptor, kept out of any reactor until [`linger`] needs it).
fn with_spare(s: TcpStream) -> std::io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let s = s.into_std()?;
    let spare = s.try_clone()?;
    Ok((s, spare))
}

/// Close a connection so that the client reads the answer Warden sent (a 431 for an oversized
/// head, a 413 for a body too large) even when it is still sending: half-close, then read and
/// discard until the client closes, within bounds of time and size. Closing a socket with unread
/// input resets the connection instead, and a client that is still writing then sees a broken
/// pipe rather than the status. Holding `spare` also keeps hyper's own close from resetting.
async fn linger(spare: std::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = TcpStream::from_std(spare) else { return };
    let _ = s.shutdown().await;
    let until = tokio::time::Instant::now() + LINGER_FOR;
    let mut buf = vec![0u8; 16 << 10];
    let mut left = LINGER_BYTES;
    loop {
        let wait = until.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(wait, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && n < left => left -= n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_the_proxys_last_entry_or_the_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy];
        let with = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            client_addr(proxy, &trusted, &h)
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(with(&["1.2.3.4, 5.6.7.8"]), ip("5.6.7.8"));
        assert_eq!(with(&["1.2.3.4", "5.6.7.8"]), ip("5.6.7.8"));
        assert_eq!(with(&["5.6.7.8:4711"]), ip("5.6.7.8"));
        assert_eq!(with(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(with(&["::ffff:5.6.7.8"]), ip("5.6.7.8"));
        // The client's own claim (1.2.3.4) is never taken when the proxy's entry does not parse.
        assert_eq!(with(&["1.2.3.4, unknown"]), proxy);
        assert_eq!(with(&["1.2.3.4, "]), proxy);
        assert_eq!(with(&["1.2.3.4", "_hidden"]), proxy);
        assert_eq!(with(&[]), proxy);
        // Not from a trusted proxy: the header counts for nothing.
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        assert_eq!(client_addr(ip("9.9.9.9"), &trusted, &h), ip("9.9.9.9"));
    }
}
