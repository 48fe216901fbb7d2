//! `warden-vulnerable --stdio` or `warden-vulnerable --http 127.0.0.1:PORT`: the deliberately
//! vulnerable MCP server of the CVE regression suite (see `warden_testkit::vulnerable`).
use clap::Parser;
use std::sync::Arc;
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
    warden_testkit::serve::serve("warden-vulnerable", args.http, |_| Arc::new(Vulnerable)).await
}
