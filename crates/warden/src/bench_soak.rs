//! `warden bench --soak SECS`: the full pipeline under load at concurrency 16 for SECS seconds,
//! with Warden's RSS sampled every tenth of the run. A leak shows as RSS that keeps climbing
//! after the first samples (allocator warm-up); a flat series is what a gateway must keep.

use crate::bench::{load, rss_kb, start_warden_with, Target};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Run the soak against a Warden in front of `upstream` with `sections`, calling with `bearer`.
pub async fn run(upstream: &str, sections: &str, bearer: Option<&str>, secs: u64) -> anyhow::Result<()> {
    let (w, url) = start_warden_with(upstream, sections).await?;
    let pid = w.id().unwrap_or(0);
    let target = Arc::new(Target::http_as(&url, bearer).await?);
    let started = Instant::now();
    let step = Duration::from_secs(secs.max(10) / 10);
    println!("| seconds | calls | calls/s in the interval | p99 µs | Warden RSS MB |\n|---:|---:|---:|---:|---:|");
    println!("| 0 | 0 | | | {:.1} |", rss_kb(pid) as f64 / 1024.0);
    let mut total = 0usize;
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let t0 = Instant::now();
        let mut calls = 0usize;
        let mut p99 = Duration::ZERO;
        while t0.elapsed() < step {
            let st = load(target.clone(), 20_000, 16).await?;
            calls += 20_000;
            p99 = p99.max(st.p99);
        }
        total += calls;
        let rss = rss_kb(pid) as f64 / 1024.0;
        samples.push(rss);
        println!(
            "| {} | {total} | {:.0} | {:.0} | {rss:.1} |",
            started.elapsed().as_secs(),
            calls as f64 / t0.elapsed().as_secs_f64(),
            p99.as_secs_f64() * 1e6
        );
    }
    if let (Some(first), Some(last)) = (samples.get(1).or(samples.first()), samples.last()) {
        let max = samples.iter().cloned().fold(0.0, f64::max);
        println!("\nRSS after the first interval {first:.1} MB, at the end {last:.1} MB, highest {max:.1} MB ({total} calls)");
    }
    Ok(())
}
