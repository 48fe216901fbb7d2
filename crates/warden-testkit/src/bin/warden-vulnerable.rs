//! `warden-vulnerable --stdio` or `warden-vulnerable --http 127.0.0.1:PORT`: the deliberately
//! vulnerable MCP server of the CVE regression suite (see `warden_testkit::vulnerable`).
use clap::Parser;
use std::sync::Arc;
use warden_gateway::gateway::mcp_router;
use warden_gateway::listener::{serve_router, ListenLimits};
use warden_gateway::server::http::{HttpOptions, McpEndpoint};
use warden_testkit::vulnerable::Vulnerable;

#[derive(Parser)]
#[command(about = "Deliberately vulnerable MCP server for Warden's CVE regression suite")]
struct Args {
    /// Serve one client on stdin/stdout.
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Serve Streamable HTTP on this address (path /mcp).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let ep = McpEndpoint::new(Arc::new(Vulnerable), HttpOptions::default(), None);
            let limits = ListenLimits {
                max_header_bytes: 64 << 10,
                read_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            };
            serve_router(listener, mcp_router(ep, None), limits, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        }
        None => {
            warden_gateway::server::stdio::serve(Arc::new(Vulnerable), tokio::io::stdin(), tokio::io::stdout(), 64)
                .await?;
        }
    }
    Ok(())
}
