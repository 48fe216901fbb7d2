//! `warden bench`: `tools/call` latency and throughput against the fixture server **directly** and
//! **through Warden**, in one run, for an HTTP upstream and a stdio upstream, plus Warden's RSS
//! (idle, after load, per idle session). Everything runs on loopback; request loops are bounded.

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Mutex};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The fixture server binary (default: `warden-fixture` next to this binary).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Calls measured per target at concurrency 1 (higher concurrency levels run 10x as many).
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Concurrency levels, comma-separated.
    #[arg(long, default_value = "1,64")]
    concurrency: String,
    /// Idle sessions opened to measure memory per session.
    #[arg(long, default_value_t = 500)]
    sessions: usize,
    /// Measure only the authentication stage, in process.
    #[arg(long)]
    auth: bool,
    /// Measure only the request-policy stage (rules, limits), in process.
    #[arg(long)]
    policy: bool,
    /// With --policy: also measure limits in this Redis (`redis://127.0.0.1:6379`), against a
    /// bare PING round trip to it.
    #[arg(long)]
    redis: Option<String>,
    /// Measure the audit trail: sink throughput and the per-call recording cost, in process.
    #[arg(long)]
    audit: bool,
    /// Measure the content-security detectors: quality on the corpora and on the classifier's
    /// held-out split (patterns; with --classifier also the classifier and both), and speed.
    #[arg(long)]
    content: bool,
    /// With --content: the directory of the shared corpora (default `../shared/corpora`
    /// beside the repository).
    #[arg(long)]
    corpora: Option<PathBuf>,
    /// Measure the semantic injection classifier with this encoder directory (e.g.
    /// `.models/all-minilm-l6-v2`) on the held-out split `scripts/classifier/data/heldout.jsonl`:
    /// patterns, classifier and both, and its time per 4 KB (run with `RAYON_NUM_THREADS=1` for
    /// one core). Alone, or with --content after the corpora.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Load one Warden only, for a profiler: `relay` (relay only) or `full` (the full pipeline),
    /// `defaults` (the defaults, audit off), `floor` / `floor-reqwest` (the floor proxy) or `direct`
    /// (the fixture alone), HTTP upstream, at the first --concurrency level for --calls calls; its pid is printed
    /// first (`perf record -g -p PID`), then the load starts three seconds later.
    #[arg(long)]
    profile: Option<String>,
    /// Soak: the full pipeline at concurrency 16 for this many seconds, Warden's RSS sampled
    /// every tenth of it (the issue asks for 600).
    #[arg(long)]
    soak: Option<u64>,
    /// Replicas (issue 23): 1 Warden, 1 and 3 behind HAProxy (Redis, one `[cluster] key`), limits
    /// in Redis against memory, and the cost of taking a session up on another replica. Needs
    /// `haproxy` and `redis-server`.
    #[arg(long)]
    cluster: bool,
    /// Worker threads of the Wardens under test (`TOKIO_WORKER_THREADS`; default: one per core).
    #[arg(long)]
    warden_threads: Option<usize>,
    /// Internal: serve the floor proxy (`bench_floor.rs`) on this address, relaying to
    /// `--floor-upstream`; the bench starts it as a process of its own.
    #[arg(long, hide = true)]
    floor_proxy: Option<std::net::SocketAddr>,
    #[arg(long, hide = true)]
    floor_upstream: Option<String>,
    /// Internal, with --floor-proxy: send upstream with a reqwest client.
    #[arg(long, hide = true)]
    floor_reqwest: bool,
}

// Two values per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Http {
        client: reqwest::Client,
        url: String,
        session: String,
        next: std::sync::atomic::AtomicU64,
    },
    /// MCP 2026-07-28: no session; each request carries its version and capabilities.
    Stateless {
        client: reqwest::Client,
        url: String,
        next: std::sync::atomic::AtomicU64,
    },
    Stdio {
        stdin: Mutex<tokio::process::ChildStdin>,
        pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
        next: std::sync::atomic::AtomicU64,
        _child: Child,
    },
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} not ready")
}

pub(crate) fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn answer_of(body: &str) -> Option<Value> {
    // JSON body, or SSE events: the last data line holding a result/error
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return Some(v);
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

async fn http_session(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "warden-bench", "version": "1"}}});
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init.to_string())
        .send()
        .await?;
    let sid =
        r.headers().get("mcp-session-id").ok_or_else(|| anyhow!("no session id from {url}"))?.to_str()?.to_string();
    r.text().await?;
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .send()
        .await?;
    Ok(sid)
}

impl Target {
    pub(crate) async fn http(url: &str) -> anyhow::Result<Target> {
        Target::http_as(url, None).await
    }

    /// A session sending `bearer` (an API key) on every request.
    pub(crate) async fn http_as(url: &str, bearer: Option<&str>) -> anyhow::Result<Target> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(b) = bearer {
            headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {b}").parse()?);
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .default_headers(headers)
            .build()?;
        let session = http_session(&client, url).await?;
        Ok(Target::Http { client, url: url.to_string(), session, next: 1.into() })
    }

    /// The same 2025 session, its requests sent to `url` (another replica).
    pub(crate) fn same_session_at(&self, url: &str) -> anyhow::Result<Target> {
        match self {
            Target::Http { client, session, .. } => Ok(Target::Http {
                client: client.clone(),
                url: url.to_string(),
                session: session.clone(),
                next: 1.into(),
            }),
            _ => bail!("not an HTTP session"),
        }
    }

    fn stateless(url: &str) -> anyhow::Result<Target> {
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
        Ok(Target::Stateless { client, url: url.to_string(), next: 1.into() })
    }

    async fn stdio(fixture: &PathBuf) -> anyhow::Result<Target> {
        let mut child = Command::new(fixture)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Default::default();
        let p2 = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(tx) = p2.lock().expect("lock").remove(&id) {
                            let _ = tx.send(v);
                        }
                    }
                }
            }
        });
        let t = Target::Stdio { stdin: Mutex::new(stdin), pending, next: 1.into(), _child: child };
        let init = t.rpc("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "warden-bench", "version": "1"}})).await?;
        if init.get("result").is_none() {
            bail!("fixture initialize failed: {init}");
        }
        if let Target::Stdio { stdin, .. } = &t {
            stdin.lock().await.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n").await?;
        }
        Ok(t)
    }

    async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        match self {
            Target::Http { client, url, session, next } => {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", "2025-11-25")
                    .body(body.to_string())
                    .send()
                    .await?;
                let text = r.text().await?;
                answer_of(&text).ok_or_else(|| anyhow!("no answer in {text:?}"))
            }
            Target::Stateless { client, url, next } => {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut params = params;
                params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                         "io.modelcontextprotocol/clientCapabilities": {}});
                let name = params.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", method)
                    .header("mcp-name", name)
                    .body(body.to_string())
                    .send()
                    .await?;
                let text = r.text().await?;
                answer_of(&text).ok_or_else(|| anyhow!("no answer in {text:?}"))
            }
            Target::Stdio { stdin, pending, next, .. } => {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                pending.lock().expect("lock").insert(id, tx);
                let line = format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
                stdin.lock().await.write_all(line.as_bytes()).await?;
                Ok(rx.await?)
            }
        }
    }

    pub(crate) async fn call(&self) -> anyhow::Result<()> {
        let v = self.rpc("tools/call", json!({"name": "echo", "arguments": {"text": "bench"}})).await?;
        if v.pointer("/result/content/0/text").and_then(Value::as_str) != Some("bench") {
            bail!("unexpected answer {v}");
        }
        Ok(())
    }
}

pub(crate) struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub rate: f64,
}

pub(crate) async fn load(t: Arc<Target>, calls: usize, conc: usize) -> anyhow::Result<Stats> {
    for _ in 0..(calls / 10).max(50) {
        t.call().await?; // warm-up
    }
    let per = calls.div_ceil(conc);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let s = Instant::now();
                t.call().await?;
                lat.push(s.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(per * conc);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(Stats { p50: pct(0.50), p99: pct(0.99), rate: all.len() as f64 / wall.as_secs_f64() })
}

/// The stages Warden runs, for the rows that compare them.
const ALLOW_ALL: &str = "[[rule]]\nid = \"bench\"\ntools = [\"*\"]\nresources = [\"*\"]\nprompts = [\"*\"]\n";

/// Relay only: no authentication, no content stages, no audit trail.
const RELAY_ONLY: &str = "[content]\nvalidate_arguments = false\nsanitize = false\ninjection = \"off\"\nredact = []\n\
                          [audit]\nenabled = false\n";

/// The full pipeline: an API key, a CEL rule, a rate limit, the argument schema, a text guard,
/// sanitize / injection detection / redaction, and the SQLite audit trail (the defaults).
fn full_pipeline(api_key_entry: &str) -> String {
    format!(
        "[auth]\n{api_key_entry}\n[limits]\nper_principal = \"100000000/minute\"\nper_principal_burst = 1000000\n\
         [[rule]]\nid = \"bench-cel\"\ntools = [\"*\"]\nwhen = \"args.text != 'forbidden'\"\n\
         [[guard]]\ntools = [\"echo\"]\nargument = \"text\"\nkind = \"text\"\n"
    )
}

async fn start_warden(upstream: &str) -> anyhow::Result<(Child, String)> {
    start_warden_with(upstream, ALLOW_ALL).await
}

/// A Warden in front of `upstream` with `sections` (rules included) added.
pub(crate) async fn start_warden_with(upstream: &str, sections: &str) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("warden-bench-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = format!(
        "[listen]\naddr = \"127.0.0.1:{port}\"\nmax_sessions = 100000\nmax_sessions_per_principal = 100000\n\n{upstream}\n{sections}"
    );
    std::fs::write(dir.join("w.toml"), cfg)?;
    let mut cmd = under_test()?;
    let child = cmd
        .args(["serve", "--config"])
        .arg(dir.join("w.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/readyz")).await?;
    Ok((child, format!("{base}/mcp")))
}

/// This binary, as a process under test (with `--warden-threads`).
fn under_test() -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    if let Some(n) = WARDEN_THREADS.get().copied().flatten() {
        cmd.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    Ok(cmd)
}

/// The floor proxy (`bench_floor.rs`) in front of `upstream`, as a process of its own.
async fn start_floor(upstream: &str, with_reqwest: bool) -> anyhow::Result<(Child, String)> {
    let port = free_port()?;
    let mut cmd = under_test()?;
    cmd.args(["bench", "--floor-proxy", &format!("127.0.0.1:{port}"), "--floor-upstream", upstream]);
    if with_reqwest {
        cmd.arg("--floor-reqwest");
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true).spawn()?;
    wait_ready_port(port).await?;
    Ok((child, format!("http://127.0.0.1:{port}/mcp")))
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `--warden-threads`, for every Warden started.
static WARDEN_THREADS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Removes the Wardens' directories (their audit trails grow by hundreds of MB a run) when
/// the bench ends, however it ends.
struct TempDirs;

impl Drop for TempDirs {
    fn drop(&mut self) {
        let prefix = format!("warden-bench-{}-", std::process::id());
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let _ = WARDEN_THREADS.set(a.warden_threads);
    let _dirs = TempDirs;
    if let Some(listen) = a.floor_proxy {
        let up = a.floor_upstream.context("--floor-upstream")?;
        return crate::bench_floor::serve(listen, up, a.floor_reqwest).await;
    }
    if a.auth {
        return crate::bench_auth::run(a.calls.max(100)).await;
    }
    if a.content {
        crate::bench_content::run(a.corpora)?;
        return crate::bench_classifier::run(a.classifier.as_deref());
    }
    if let Some(model) = a.classifier {
        return crate::bench_classifier::run(Some(&model));
    }
    if a.audit {
        return crate::bench_audit::run(a.calls.max(1000) * 100).await;
    }
    if a.policy {
        crate::bench_policy::run(a.calls.max(1000) * 10)?;
        if let Some(url) = &a.redis {
            crate::bench_policy::redis(url, a.calls.max(1000)).await?;
        }
        return Ok(());
    }
    let fixture = match a.fixture {
        Some(f) => f,
        None => std::env::current_exe()?.with_file_name("warden-fixture"),
    };
    anyhow::ensure!(fixture.exists(), "fixture not found at {} (build warden-testkit)", fixture.display());
    let levels: Vec<usize> =
        a.concurrency.split(',').map(|s| s.trim().parse()).collect::<Result<_, _>>().context("--concurrency")?;

    let fport = free_port()?;
    let mut fx = Command::new(&fixture)
        .args(["--http", &format!("127.0.0.1:{fport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let fx_url = format!("http://127.0.0.1:{fport}/mcp");
    wait_ready_port(fport).await?;

    let fpath = fixture.display().to_string();
    // The fixture's endpoint serves both generations: these Wardens speak 2025-11-25 to it …
    let http_up = format!(
        "[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {fx_url:?}\nprotocol = \"2025-11-25\"\n"
    );
    if a.cluster {
        let relay = format!("{RELAY_ONLY}{ALLOW_ALL}");
        crate::bench_cluster::run(&http_up, &fx_url, &relay, a.calls, &levels).await?;
        drop(fx);
        return Ok(());
    }
    if let Some(secs) = a.soak {
        let (key, entry) = warden_gateway::auth::apikey::generate("bench", &["mcp".into()], None, None);
        crate::bench_soak::run(&http_up, &full_pipeline(&entry), Some(&key), secs).await?;
        drop(fx);
        return Ok(());
    }
    if let Some(kind) = &a.profile {
        let (key, entry) = warden_gateway::auth::apikey::generate("bench", &["mcp".into()], None, None);
        let (w, url, bearer) = match kind.as_str() {
            "relay" => {
                let (w, url) = start_warden_with(&http_up, &format!("{RELAY_ONLY}{ALLOW_ALL}")).await?;
                (w, url, None)
            }
            "full" => {
                let (w, url) = start_warden_with(&http_up, &full_pipeline(&entry)).await?;
                (w, url, Some(key.as_str()))
            }
            "defaults" => {
                let (w, url) = start_warden(&format!("{http_up}[audit]\nenabled = false\n")).await?;
                (w, url, None)
            }
            "floor" | "floor-reqwest" => {
                let (w, url) = start_floor(&fx_url, kind == "floor-reqwest").await?;
                (w, url, None)
            }
            "direct" => (Command::new("true").spawn()?, fx_url.clone(), None),
            other => bail!("--profile: relay, full, defaults, floor, floor-reqwest or direct, not {other:?}"),
        };
        println!("warden pid: {}", w.id().unwrap_or(0));
        tokio::time::sleep(Duration::from_secs(if kind == "direct" { 0 } else { 3 })).await;
        let c = levels.first().copied().unwrap_or(1);
        let st = load(Arc::new(Target::http_as(&url, bearer).await?), a.calls, c).await?;
        println!(
            "{kind}: concurrency {c}, {} calls: p50 {:.0} µs, p99 {:.0} µs, {:.0} calls/s",
            a.calls,
            us(st.p50),
            us(st.p99),
            st.rate
        );
        drop(fx);
        return Ok(());
    }
    let (w_http, w_http_url) = start_warden(&http_up).await?;
    // The same without an audit trail: the cost of recording, in the same run.
    let (_w_noaudit, w_noaudit_url) = start_warden(&format!("{http_up}[audit]\nenabled = false\n")).await?;
    // … and with a durable trail: every answer waits for its batch's fsync (group commit).
    let (_w_fsync, w_fsync_url) = start_warden(&format!("{http_up}[audit]\nfsync = \"batch\"\n")).await?;
    // … and this one 2026-07-28 (found by `protocol = "auto"`): stateless upstream calls.
    let (_w_http26, w_http26_url) = start_warden(&format!(
        "[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"http\"\nurl = {fx_url:?}\n"
    ))
    .await?;
    let stdio_up = format!("[[upstream]]\nname = \"fx\"\nnamespace = \"\"\ntransport = \"stdio\"\ncommand = {fpath:?}\nargs = [\"--stdio\"]\n");
    let (w_stdio, w_stdio_url) = start_warden(&stdio_up).await?;
    // The stages compared (issue 22): the relay alone, and the full pipeline with a caller's key.
    let (key, key_entry) = warden_gateway::auth::apikey::generate("bench", &["mcp".into()], None, None);
    let full = full_pipeline(&key_entry);
    let relay = format!("{RELAY_ONLY}{ALLOW_ALL}");
    let (_w_relay, w_relay_url) = start_warden_with(&http_up, &relay).await?;
    let (_w_full, w_full_url) = start_warden_with(&http_up, &full).await?;
    let (_w_relay_stdio, w_relay_stdio_url) = start_warden_with(&stdio_up, &relay).await?;
    let (_w_full_stdio, w_full_stdio_url) = start_warden_with(&stdio_up, &full).await?;
    // The physical floor: two loopback hops with no work (and the same with reqwest upstream).
    let (_floor, floor_url) = start_floor(&fx_url, false).await?;
    let (_floor_rq, floor_rq_url) = start_floor(&fx_url, true).await?;
    // The same without the sandbox: its cost per call and per session start, in the same run.
    let (_w_nosbx, w_nosbx_url) = start_warden(&format!("{stdio_up}[upstream.sandbox]\nenabled = false\n")).await?;
    let pid_http = w_http.id().unwrap_or(0);
    let pid_stdio = w_stdio.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_http = rss_kb(pid_http);
    let idle_stdio = rss_kb(pid_stdio);

    println!("| upstream | path | concurrency | calls | p50 µs | p99 µs | calls/s | added p50 µs | p50 ratio |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for &c in &levels {
        let calls = if c == 1 { a.calls } else { a.calls * 10 };
        for (kind, direct, via) in [
            ("http", Arc::new(Target::http(&fx_url).await?), Arc::new(Target::http(&w_http_url).await?)),
            ("stdio", Arc::new(Target::stdio(&fixture).await?), Arc::new(Target::http(&w_stdio_url).await?)),
            // 2026-07-28 (stateless) client, through Warden to the same 2025 HTTP upstream
            ("http, 2026 client", Arc::new(Target::stateless(&fx_url)?), Arc::new(Target::stateless(&w_http_url)?)),
            // a 2025 session through Warden to a 2026 upstream (direct: a stateless call)
            (
                "http, 2026 upstream",
                Arc::new(Target::stateless(&fx_url)?),
                Arc::new(Target::http(&w_http26_url).await?),
            ),
            // 2026 on both hops
            ("http, 2026 both", Arc::new(Target::stateless(&fx_url)?), Arc::new(Target::stateless(&w_http26_url)?)),
        ] {
            let d = load(direct, calls, c).await?;
            let w = load(via, calls, c).await?;
            println!("| {kind} | direct | {c} | {calls} | {:.0} | {:.0} | {:.0} | | |", us(d.p50), us(d.p99), d.rate);
            // a row through Warden, against the direct one
            let via_row = |label: &str, w: &Stats| {
                println!(
                    "| {kind} | {label} | {c} | {calls} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                    us(w.p50),
                    us(w.p99),
                    w.rate,
                    us(w.p50) - us(d.p50),
                    us(w.p50) / us(d.p50)
                )
            };
            if kind == "http" {
                via_row(
                    "floor: bare proxy, no work",
                    &load(Arc::new(Target::http(&floor_url).await?), calls, c).await?,
                );
                via_row(
                    "floor, reqwest upstream client",
                    &load(Arc::new(Target::http(&floor_rq_url).await?), calls, c).await?,
                );
            }
            via_row("via Warden", &w);
            let (relay_url, full_url) = match kind {
                "http" => (&w_relay_url, &w_full_url),
                "stdio" => (&w_relay_stdio_url, &w_full_stdio_url),
                _ => continue,
            };
            via_row("relay only", &load(Arc::new(Target::http(relay_url).await?), calls, c).await?);
            via_row("full pipeline", &load(Arc::new(Target::http_as(full_url, Some(&key)).await?), calls, c).await?);
            match kind {
                "http" => {
                    via_row(
                        "via Warden, audit off",
                        &load(Arc::new(Target::http(&w_noaudit_url).await?), calls, c).await?,
                    );
                    via_row(
                        "via Warden, fsync \"batch\"",
                        &load(Arc::new(Target::http(&w_fsync_url).await?), calls, c).await?,
                    );
                }
                "stdio" => via_row(
                    "via Warden, sandbox off",
                    &load(Arc::new(Target::http(&w_nosbx_url).await?), calls, c).await?,
                ),
                _ => {}
            }
        }
    }
    // Session start with a stdio upstream: initialize, then the first call, which starts the
    // session's child (in its sandbox, or not).
    println!();
    println!("| stdio session start (initialize + first call, child spawned) | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    for (label, url) in [("sandboxed", &w_stdio_url), ("sandbox off", &w_nosbx_url)] {
        let mut times = Vec::new();
        for _ in 0..40 {
            let t0 = std::time::Instant::now();
            let t = Target::http(url).await?;
            t.call().await?;
            times.push(t0.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("| {label} | {:.1} | {:.1} |", ms(times[times.len() / 2]), ms(times[times.len() * 99 / 100]));
    }
    let loaded_http = rss_kb(pid_http);
    let loaded_stdio = rss_kb(pid_stdio);

    // idle sessions: open N sessions through the HTTP-upstream Warden and leave them idle
    let client = reqwest::Client::new();
    let before = rss_kb(pid_http);
    for _ in 0..a.sessions {
        http_session(&client, &w_http_url).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kb(pid_http);
    println!();
    println!("| Warden RSS | HTTP upstream | stdio upstream |");
    println!("|---|---:|---:|");
    println!("| idle (after start) | {:.1} MB | {:.1} MB |", idle_http as f64 / 1024.0, idle_stdio as f64 / 1024.0);
    println!(
        "| after the load above | {:.1} MB | {:.1} MB |",
        loaded_http as f64 / 1024.0,
        loaded_stdio as f64 / 1024.0
    );
    println!(
        "| per idle session ({} initialized sessions; upstreams connect on first use) | {:.1} KB | |",
        a.sessions,
        (after.saturating_sub(before)) as f64 / a.sessions as f64
    );
    let _ = fx.kill().await;
    Ok(())
}

/// Until something listens on loopback `port` (at most 20 s).
pub(crate) async fn wait_ready_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("nothing listens on 127.0.0.1:{port} after 20 s")
}
