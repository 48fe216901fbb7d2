//! The `main` of the test servers (`warden-fixture`, `warden-vulnerable`): one client on
//! stdin/stdout, or Streamable HTTP on an address (path `/mcp`) until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use warden_gateway::gateway::mcp_router;
use warden_gateway::listener::{serve_router, ListenLimits};
use warden_gateway::server::http::{HttpOptions, McpEndpoint};
use warden_gateway::server::Service;

/// Serve `service(stdio)` over HTTP on `http`, or over stdio when it is None; `name` is what the
/// listening line on stderr calls the server.
pub async fn serve(
    name: &str,
    http: Option<SocketAddr>,
    service: impl Fn(bool) -> Arc<dyn Service>,
) -> anyhow::Result<()> {
    match http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("{name} listening on http://{}/mcp", listener.local_addr()?);
            let ep = McpEndpoint::new(service(false), HttpOptions::default(), None);
            let limits = ListenLimits {
                max_header_bytes: 64 << 10,
                read_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            };
            serve_router(listener, mcp_router(ep, None), limits, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        None => {
            warden_gateway::server::stdio::serve(service(true), tokio::io::stdin(), tokio::io::stdout(), 64).await?;
        }
    }
    Ok(())
}
