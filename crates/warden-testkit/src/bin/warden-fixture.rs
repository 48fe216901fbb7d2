//! `warden-fixture --stdio` or `warden-fixture --http 127.0.0.1:PORT`: the fixture MCP server.
use clap::Parser;
use std::sync::Arc;
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
    warden_testkit::serve::serve("warden-fixture", args.http, |stdio| Arc::new(Fixture { stdio })).await
}
