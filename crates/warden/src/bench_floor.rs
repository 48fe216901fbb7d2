//! The physical floor of a relay, for `warden bench`: a bare HTTP/1.1 proxy that forwards each
//! request to the upstream and its answer back, doing no work at all (no parsing, no policy, no
//! record). The bench runs it as its own process, like a Warden, and reports its row as "floor":
//! two loopback hops with nothing in between. What Warden adds beyond that row is Warden's own.
//!
//! Each client connection gets its own upstream connection, driven on the same task as the
//! client's (no channel, no pool, no cross-thread wake-up): the cheapest way to relay.
//! `--floor-client reqwest` makes it send upstream with a shared `reqwest` client instead, to
//! price that client.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

type Upstream = (client::SendRequest<Full<Bytes>>, client::Connection<TokioIo<TcpStream>, Full<Bytes>>);

/// Serve on `listen`, relaying to `upstream` (an `http://host:port/path` URL).
pub async fn serve(listen: SocketAddr, upstream: String, with_reqwest: bool) -> anyhow::Result<()> {
    let url: reqwest::Url = upstream.parse().context("upstream URL")?;
    let addr = url.socket_addrs(|| None)?.into_iter().next().context("upstream address")?;
    let reqwest = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(256).build()?;
    let l = TcpListener::bind(listen).await?;
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let (url, reqwest) = (url.clone(), reqwest.clone());
        tokio::spawn(async move {
            let up = if with_reqwest { None } else { Some(connect(addr).await?) };
            let up = Arc::new(tokio::sync::Mutex::new(up));
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (up, url, reqwest) = (up.clone(), url.clone(), reqwest.clone());
                async move {
                    let mut up = up.lock().await;
                    match up.as_mut() {
                        Some(up) => relay(req, up, &url).await,
                        None => relay_reqwest(req, &reqwest, url).await,
                    }
                }
            });
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await?;
            anyhow::Ok(())
        });
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Upstream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(client::handshake(TokioIo::new(s)).await?)
}

/// Poll `fut` to its end while driving the upstream connection on this task.
async fn driving<F: std::future::Future>(
    fut: F,
    conn: &mut client::Connection<TokioIo<TcpStream>, Full<Bytes>>,
) -> anyhow::Result<F::Output> {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => Ok(out),
        r = conn => anyhow::bail!("upstream connection ended: {r:?}"),
    }
}

async fn relay(req: Request<Incoming>, up: &mut Upstream, url: &reqwest::Url) -> anyhow::Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut out = Request::builder().method(parts.method).uri(url.path());
    for (k, v) in &parts.headers {
        if k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out.header(http::header::HOST, url.authority()).body(Full::new(body))?;
    let (sender, conn) = up;
    let resp = driving(sender.send_request(out), conn).await??;
    let (mut parts, body) = resp.into_parts();
    let body = driving(body.collect(), conn).await??.to_bytes();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn relay_reqwest(
    req: Request<Incoming>,
    client: &reqwest::Client,
    url: reqwest::Url,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut headers = parts.headers;
    headers.remove(http::header::HOST);
    let resp = client.post(url).headers(headers).body(body).send().await?;
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != http::header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    Ok(out.body(Full::new(resp.bytes().await?))?)
}
