//! `warden classifier` without building the whole gateway: `cargo run --release -p
//! warden-classifier --example classifier -- train …`.
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: warden_classifier::cli::ClassifierCmd,
}

fn main() -> anyhow::Result<()> {
    warden_classifier::cli::run(Args::parse().cmd)
}
