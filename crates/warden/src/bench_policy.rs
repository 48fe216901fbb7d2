//! `warden bench --policy`: the request-policy stage in process, with 1,000 rules: one decision
//! (exact-name rule; rule with a CEL condition over the arguments), the whole admission (kill switch
//! → rules → per-caller and per-tool GCRA), one local rate-limit check, and filtering a 100-tool
//! listing. No network.

use futures::FutureExt;
use serde_json::json;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;
use warden_gateway::config::Config;
use warden_gateway::killswitch::KillSwitches;
use warden_gateway::policy::Policy;
use warden_gateway::store::memory::MemoryStore;
use warden_gateway::store::Store;
use warden_policy::limits::{MemoryLimiter, Rate};
use warden_policy::rules::{Kind, Target};
use warden_policy::Principal;

fn per_op(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

pub fn run(n: usize) -> anyhow::Result<()> {
    let mut text = String::from("[[upstream]]\nname = \"db\"\ntransport = \"stdio\"\ncommand = \"true\"\n");
    for i in 0..990 {
        let _ = write!(
            text,
            "[[rule]]\nid = \"r{i}\"\ntools = [\"tool_{i}\"]\nscopes = [\"mcp\"]\nroles = [\"role_{}\"]\n",
            i % 7
        );
    }
    for i in 0..9 {
        let _ = write!(text, "[[rule]]\nid = \"w{i}\"\ntools = [\"prefix{i}_*\"]\ntenants = [\"t{i}\"]\n");
    }
    text.push_str(
        "[[rule]]\nid = \"query\"\ntools = [\"query\"]\nwhen = \"args.table in ['orders', 'products'] && args.limit <= 100\"\n\
         rate = \"1000000/s\"\nburst = 1000000\n[limits]\nper_principal = \"1000000/s\"\nper_principal_burst = 1000000\n",
    );
    let cfg = Config::parse(&text, "bench").map_err(|e| anyhow::anyhow!(e.0))?;
    // The memory store answers at once: its futures are ready when first polled.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(None).map_err(|e| anyhow::anyhow!(e))?);
    let kills = KillSwitches::load(store.clone()).now_or_never().expect("ready").map_err(|e| anyhow::anyhow!(e))?;
    let policy = Policy::new(&cfg, kills, store).map_err(|e| anyhow::anyhow!(e))?;
    let rules = policy.rules();
    let mut p = Principal::local();
    p.scopes = vec!["mcp".into()];
    p.roles = vec!["role_3".into()];
    let exact = Target { kind: Kind::Tool, server: "db", name: "tool_500", read_only: false };
    let query = Target { kind: Kind::Tool, server: "db", name: "query", read_only: false };
    let args = json!({"table": "orders", "limit": 10, "columns": ["id", "total"]});
    anyhow::ensure!(rules.decide(&p, &exact, None).allowed() && rules.decide(&p, &query, Some(&args)).allowed());
    let d_exact = per_op(n, |_| assert!(rules.decide(&p, &exact, None).allowed()));
    let d_cel = per_op(n, |_| assert!(rules.decide(&p, &query, Some(&args)).allowed()));
    let admit = per_op(n, |_| {
        policy
            .admit(&p, 0, Kind::Tool, "query", false, &warden_policy::rules::Facts { args: Some(&args), taint: &[] })
            .now_or_never()
            .expect("ready")
            .expect("admitted");
    });
    let limiter = MemoryLimiter::default();
    let rate = Rate::parse("1000000/s", Some(1_000_000)).map_err(|e| anyhow::anyhow!(e))?;
    let keys: Vec<String> = (0..1000).map(|i| format!("p\0Jwt\0\0user-{i}")).collect();
    let t0 = Instant::now();
    let limit = per_op(n, |i| {
        let _ = limiter.check(&keys[i % keys.len()], &rate, t0.elapsed().as_nanos() as u64);
    });
    let names: Vec<String> = (0..100).map(|i| format!("tool_{}", i * 7 + 3)).collect();
    let listing = per_op(n / 10, |_| {
        let shown = names.iter().filter(|t| policy.visible(&p, 0, Kind::Tool, t, false)).count();
        assert!(shown > 0);
    });
    println!("| operation (1,000 rules) | µs per op | budget |\n|---|---:|---:|");
    println!("| decide, exact-name rule | {d_exact:.2} | ≤ 5 |");
    println!("| decide, CEL condition over arguments | {d_cel:.2} | ≤ 5 |");
    println!("| admit: kill switch → rules (CEL) → 2 GCRA limits | {admit:.2} | — |");
    println!("| local rate-limit check (GCRA, 1,000 keys) | {limit:.3} | ≤ 1 |");
    println!("| filter a 100-tool listing | {listing:.2} | — |");
    Ok(())
}

/// The Redis store's cost per limited call, as a ratio to one bare round trip (PING) to the same
/// Redis, measured alternately in one run: the limit check should be one round trip, no more.
pub async fn redis(url: &str, n: usize) -> anyhow::Result<()> {
    use warden_gateway::store::redis::RedisStore;
    use warden_gateway::store::{Check, Limit};
    let store =
        RedisStore::new(url, "bench", std::time::Duration::from_secs(2), None).map_err(|e| anyhow::anyhow!(e))?;
    let mut ping = redis::aio::ConnectionManager::new(redis::Client::open(url)?).await?;
    let rate = Rate::parse("1000000/s", Some(1_000_000)).map_err(|e| anyhow::anyhow!(e))?;
    let checks = vec![
        Check { key: "p\0bench".into(), limit: Limit::Rate(rate), scope: "principal" },
        Check { key: "t\0bench".into(), limit: Limit::Rate(rate), scope: "tenant" },
        Check { key: "r\0bench\0tool".into(), limit: Limit::Rate(rate), scope: "tool" },
        Check { key: "q\0bench\0tool".into(), limit: Limit::Daily(u64::MAX / 2), scope: "daily_quota" },
    ];
    store.take(&checks).await.map_err(|e| anyhow::anyhow!(e))?.map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
    let (mut t_ping, mut t_take) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut ping).await?;
        t_ping += t.elapsed();
        let t = Instant::now();
        store.take(&checks).await.map_err(|e| anyhow::anyhow!(e))?.map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
        t_take += t.elapsed();
    }
    let us = |d: std::time::Duration| d.as_nanos() as f64 / n as f64 / 1000.0;
    println!("\n| Redis store, {n} calls alternating | µs per op |\n|---|---:|");
    println!("| bare round trip (PING) | {:.1} |", us(t_ping));
    println!("| take 3 GCRA limits + 1 daily quota (one Lua script) | {:.1} |", us(t_take));
    println!("| ratio take / PING | {:.2} |", t_take.as_secs_f64() / t_ping.as_secs_f64());
    Ok(())
}
