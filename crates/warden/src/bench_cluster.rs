//! `warden bench --cluster`: Warden as several replicas (issue 23), in one run against the direct
//! call: one Warden; one behind HAProxy; three behind HAProxy (round-robin per request, one Redis,
//! one `[cluster] key`: each request of a session may land on another replica); limits kept in
//! Redis against limits in memory; and what taking a session up costs (the first request of a
//! session on a replica that does not hold it, against the next one). Needs `haproxy` and
//! `redis-server` (scripts/setup.sh installs both). Every Warden here runs the relay only (no
//! content stages, no audit trail), so that what is measured is the replica topology.

use crate::bench::{free_port, load, start_warden_with, us, wait_ready_port, Target};
use anyhow::Context;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const KEY: &str = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=";

fn port_of(url: &str) -> anyhow::Result<u16> {
    url.trim_end_matches("/mcp").rsplit(':').next().and_then(|p| p.parse().ok()).context("port")
}

fn exe(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if std::path::Path::new(&sbin).exists() {
        sbin
    } else {
        name.to_string()
    }
}

/// HAProxy on loopback in front of `backends` (ports): round-robin per request, no stickiness.
async fn haproxy(backends: &[u16]) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("warden-bench-{}-haproxy-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let servers: String = backends.iter().enumerate().map(|(i, p)| format!("  server w{i} 127.0.0.1:{p}\n")).collect();
    let cfg = format!(
        "global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  \
         timeout server 30s\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n{servers}"
    );
    std::fs::write(dir.join("haproxy.cfg"), cfg)?;
    let child = Command::new(exe("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("haproxy (Debian package `haproxy`)")?;
    wait_ready_port(port).await?;
    Ok((child, format!("http://127.0.0.1:{port}/mcp")))
}

async fn redis() -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let child = Command::new(exe("redis-server"))
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("redis-server (Debian package `redis-server`)")?;
    wait_ready_port(port).await?;
    Ok((child, format!("redis://127.0.0.1:{port}")))
}

pub async fn run(http_up: &str, fx_url: &str, relay: &str, calls: usize, levels: &[usize]) -> anyhow::Result<()> {
    let (_redis, redis_url) = redis().await?;
    let key_file = std::env::temp_dir().join(format!("warden-bench-{}-cluster-key", std::process::id()));
    std::fs::write(&key_file, KEY)?;
    let cluster = format!("[cluster]\nkey = {{ file = {:?} }}\n", key_file.display().to_string());
    let shared = format!("{cluster}[store]\nbackend = \"redis\"\nurl = {redis_url:?}\nprefix = \"bench\"\n");
    let limit = "[limits]\nper_principal = \"100000000/minute\"\nper_principal_burst = 1000000\n";
    let with_env = |s: &str| format!("{relay}{s}");
    let (_one, one_url) = start_warden_with(http_up, &with_env(&cluster)).await?;
    let (_one_lb, one_lb_url) = haproxy(&[port_of(&one_url)?]).await?;
    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(start_warden_with(http_up, &with_env(&shared)).await?);
    }
    let ports = three.iter().map(|(_, u)| port_of(u)).collect::<anyhow::Result<Vec<_>>>()?;
    let (_three_lb, three_lb_url) = haproxy(&ports).await?;
    let (_mem_limit, mem_limit_url) = start_warden_with(http_up, &with_env(&format!("{cluster}{limit}"))).await?;
    let (_redis_limit, redis_limit_url) = start_warden_with(http_up, &with_env(&format!("{shared}{limit}"))).await?;

    println!("| path | concurrency | calls | p50 µs | p99 µs | calls/s | added p50 µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &c in levels {
        let n = if c == 1 { calls } else { calls * 10 };
        let d = load(Arc::new(Target::http(fx_url).await?), n, c).await?;
        println!("| direct | {c} | {n} | {:.0} | {:.0} | {:.0} | |", us(d.p50), us(d.p99), d.rate);
        for (label, url) in [
            ("1 Warden", &one_url),
            ("1 Warden behind HAProxy", &one_lb_url),
            ("3 Wardens behind HAProxy (Redis, one session over all three)", &three_lb_url),
            ("1 Warden, per-caller limit in memory", &mem_limit_url),
            ("1 Warden, per-caller limit in Redis", &redis_limit_url),
        ] {
            let w = load(Arc::new(Target::http(url).await?), n, c).await?;
            println!(
                "| {label} | {c} | {n} | {:.0} | {:.0} | {:.0} | {:.0} |",
                us(w.p50),
                us(w.p99),
                w.rate,
                us(w.p50) - us(d.p50)
            );
        }
    }

    // Taking a session up: opened on replica 0, its first request on replica 1 (which opens the
    // sealed id, asks Redis whether it was ended and builds the session), then a second one.
    let (a, b) = (&three[0].1, &three[1].1);
    let (mut first, mut next) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let on_a = Target::http(a).await?;
        let on_b = on_a.same_session_at(b)?;
        let t = Instant::now();
        on_b.call().await?;
        first.push(t.elapsed());
        let t = Instant::now();
        on_b.call().await?;
        next.push(t.elapsed());
    }
    first.sort();
    next.sort();
    let p = |v: &[Duration], q: f64| us(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    println!();
    println!("| a session's request on replica 1, opened on replica 0 | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    println!("| first (the session is taken up) | {:.0} | {:.0} |", p(&first, 0.5), p(&first, 0.99));
    println!("| next (held) | {:.0} | {:.0} |", p(&next, 0.5), p(&next, 0.99));
    Ok(())
}
