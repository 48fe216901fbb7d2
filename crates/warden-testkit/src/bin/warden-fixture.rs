//! `warden-fixture --stdio` or `warden-fixture --http 127.0.0.1:PORT`: the fixture MCP server.
use clap::Parser;
use std::sync::Arc;
use warden_gateway::gateway::mcp_router;
use warden_gateway::listener::{serve_router, ListenLimits};
use warden_gateway::server::http::{HttpOptions, McpEndpoint};
use warden_testkit::fixture::Fixture;

#[derive(Parser)]
#[command(about = "Fixture MCP server for Warden's tests")]
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    match args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("warden-fixture listening on http://{}/mcp", listener.local_addr()?);
            let ep = McpEndpoint::new(Arc::new(Fixture { stdio: false }), HttpOptions::default(), None);
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
            warden_gateway::server::stdio::serve(
                Arc::new(Fixture { stdio: true }),
                tokio::io::stdin(),
                tokio::io::stdout(),
                64,
            )
            .await?;
        }
    }
    Ok(())
}
