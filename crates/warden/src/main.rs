//! `warden`: the MCP security gateway.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use warden_gateway::config::Config;
use warden_gateway::gateway::Gateway;

mod bench;

#[derive(Parser)]
#[command(name = "warden", version, about = "Security gateway for the Model Context Protocol")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway over Streamable HTTP.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Override listen.addr (same loopback rule applies).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file and exit (non-zero with a precise message on error).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve one local client over stdin/stdout.
    Stdio {
        #[arg(long)]
        config: PathBuf,
    },
    /// Measure tools/call latency directly against the fixture and through Warden.
    Bench(bench::BenchArgs),
}

fn load(path: &std::path::Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<Config> {
    let mut cfg = Config::load(path).map_err(|e| anyhow::anyhow!(e.0))?;
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "--listen: refusing to bind non-loopback address {addr} because no authentication is configured"
            );
        }
        cfg.listen.addr = addr;
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let res: anyhow::Result<()> = rt.block_on(async {
        match cli.cmd {
            Cmd::Check { config } => {
                let cfg = load(&config, None)?;
                println!("{}: ok ({} upstream(s))", config.display(), cfg.upstreams.len());
                Ok(())
            }
            Cmd::Serve { config, listen } => {
                let cfg = load(&config, listen)?;
                let addr = cfg.listen.addr;
                let gw = Gateway::new(cfg).map_err(|e| anyhow::anyhow!(e))?;
                let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
                gw.serve(listener, shutdown_signal()).await?;
                Ok(())
            }
            Cmd::Stdio { config } => {
                let cfg = load(&config, None)?;
                let gw = Gateway::new(cfg).map_err(|e| anyhow::anyhow!(e))?;
                gw.serve_stdio().await?;
                Ok(())
            }
            Cmd::Bench(args) => bench::run(args).await,
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(3));
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
