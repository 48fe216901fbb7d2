//! Helpers for integration tests and benchmarks: start `warden` and `warden-fixture` processes
//! on loopback, and a small raw MCP-over-HTTP client that shows exactly what went over the wire.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden_protocol::sse;

/// Path of a binary built in this workspace's target directory (next to the running test).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built; run `cargo build --workspace` first", p.display());
    p
}

/// Ports handed out by [`free_port`]: below Linux's default ephemeral range (32768–60999), so
/// that the kernel does not give a port just checked free to some test's outgoing connection
/// (or to another `bind(0)`) before the process it was meant for binds it.
const PORTS: std::ops::Range<u16> = 20000..32000;

/// A free loopback port (bound, then released), chosen at random in [`PORTS`] and never
/// handed out twice by one process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let span = u64::from(PORTS.end - PORTS.start);
    for _ in 0..1000 {
        // A random start per call (std's hasher is seeded randomly per process).
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = PORTS.start + (h.finish() % span) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Stderr log of the process (Warden's log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("warden-test-{tag}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_lie_outside_the_ephemeral_range_and_are_not_repeated() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        assert!(ports.iter().all(|p| super::PORTS.contains(p)), "{ports:?}");
        let unique: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000 + (Instant::now().elapsed().as_nanos() as u64 % 1000)
}

/// Wait until something accepts TCP connections at `url`'s host and port (at most 20 s).
pub fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{url} did not come up");
}

/// A real `redis-server` on a free loopback port, without persistence (installed by
/// `scripts/setup.sh`); `url` is `redis://127.0.0.1:<port>`. Killed on drop.
pub fn redis_server() -> Proc {
    redis_server_on(free_port())
}

/// [`redis_server`] on a given port (to restart one after an outage).
pub fn redis_server_on(port: u16) -> Proc {
    let dir = tempdir("redis");
    let args: Vec<std::ffi::OsString> = ["--port".into(), port.to_string().into()].into();
    redis_with(dir, &args, format!("redis://127.0.0.1:{port}"), port)
}

/// [`redis_server`] serving TLS only, with a certificate for `localhost`/`127.0.0.1` from a
/// throwaway CA (clients are not asked for one); `url` is `rediss://127.0.0.1:<port>`, and the
/// CA's PEM is `dir/ca.pem`.
pub fn redis_tls_server() -> Proc {
    let port = free_port();
    let dir = tempdir("redis-tls");
    let (ca, cert, key) = crate::pki::Ca::new("warden-test-redis-ca").write_server(&dir);
    let mut args: Vec<std::ffi::OsString> = ["--port", "0", "--tls-port"].map(Into::into).into();
    args.push(port.to_string().into());
    for (flag, path) in [("--tls-cert-file", &cert), ("--tls-key-file", &key), ("--tls-ca-cert-file", &ca)] {
        args.push(flag.into());
        args.push(path.into());
    }
    args.extend(["--tls-auth-clients", "no"].map(Into::into));
    redis_with(dir, &args, format!("rediss://127.0.0.1:{port}"), port)
}

/// `redis-server` on loopback without persistence, in `dir`, with these extra arguments.
fn redis_with(dir: PathBuf, args: &[std::ffi::OsString], url: String, port: u16) -> Proc {
    let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .arg("--dir")
        .arg(&dir)
        .stdout(err.try_clone().unwrap())
        .stderr(err)
        .spawn()
        .expect("redis-server (installed by scripts/setup.sh)");
    wait_http(&format!("http://127.0.0.1:{port}/"));
    Proc { child, url, dir }
}

/// A real PostgreSQL server: a fresh cluster (`initdb`, trust authentication on loopback, no
/// fsync) in a temporary directory, listening on a free loopback port, run as the `postgres`
/// user when the tests run as root (PostgreSQL refuses root). `url` is
/// `postgres://warden@127.0.0.1:<port>/postgres`; `warden` is the cluster's superuser. Installed
/// by `scripts/setup.sh`; `WARDEN_PG_BIN` overrides where its binaries are. Stopped on drop
/// (immediate shutdown).
pub struct Postgres {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
    /// [`postgres_tls_server`]: the CA its certificate is from (PEM file).
    pub ca: Option<PathBuf>,
    /// How [`Postgres::sql`] connects: `url`, or the Unix socket for a TLS-only server.
    admin: String,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, which also releases the shared memory (SIGKILL of the
        // postmaster would leave it behind).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.proc.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The directory with PostgreSQL's server binaries (`initdb`, `postgres`).
fn pg_bin() -> PathBuf {
    if let Some(d) = std::env::var_os("WARDEN_PG_BIN") {
        return d.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|v| v.1).expect("PostgreSQL server binaries (installed by scripts/setup.sh)")
}

pub fn postgres_server() -> Postgres {
    postgres_with(false)
}

/// A PostgreSQL server that takes TCP connections over TLS only (`hostssl`: a plain one is
/// refused), its certificate for `localhost` (not `127.0.0.1`) from a throwaway CA, whose PEM
/// file is [`Postgres::ca`].
pub fn postgres_tls_server() -> Postgres {
    postgres_with(true)
}

fn postgres_with(tls: bool) -> Postgres {
    use std::os::unix::process::CommandExt;
    let bin = pg_bin();
    let dir = tempdir("postgres");
    let data = dir.join("data");
    // PostgreSQL will not run as root: give the cluster to the `postgres` user.
    let owner = if nix::unistd::Uid::effective().is_root() {
        let u = nix::unistd::User::from_name("postgres").ok().flatten().expect("a postgres user (scripts/setup.sh)");
        std::os::unix::fs::chown(&dir, Some(u.uid.as_raw()), Some(u.gid.as_raw())).unwrap();
        Some((u.uid.as_raw(), u.gid.as_raw()))
    } else {
        None
    };
    let as_owner = |cmd: &mut Command| {
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&dir);
    };
    let mut init = Command::new(bin.join("initdb"));
    init.arg("-D").arg(&data).args(["-U", "warden", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
    as_owner(&mut init);
    let out = init.output().expect("initdb");
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let ca = tls.then(|| {
        use std::os::unix::fs::PermissionsExt;
        let authority = crate::pki::Ca::new("warden-test-postgres-ca");
        let (cert, key, _) = authority.issue("localhost", &["localhost"], false);
        std::fs::write(data.join("server.crt"), cert).unwrap();
        std::fs::write(data.join("server.key"), key).unwrap();
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        for f in ["server.crt", "server.key", "pg_hba.conf"] {
            let path = data.join(f);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &authority.pem).unwrap();
        ca
    });
    let port = free_port();
    let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D").arg(&data).args(["-p", &port.to_string(), "-k"]).arg(&dir).args([
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "shared_buffers=16MB",
        "-c",
        "max_connections=40",
    ]);
    if tls {
        cmd.args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"]);
    }
    as_owner(&mut cmd);
    let child = cmd.stdout(Stdio::null()).stderr(err).spawn().expect("postgres");
    let url = format!("postgres://warden@127.0.0.1:{port}/postgres");
    let admin =
        if tls { format!("host={} port={port} user=warden dbname=postgres", dir.display()) } else { url.clone() };
    let pg = Postgres { proc: Proc { child, url: url.clone(), dir }, url, port, ca, admin };
    pg.sql(|_| ());
    pg
}

impl Postgres {
    /// Run `f` with a client connected as the superuser (retried until the server accepts
    /// connections). On a thread of its own: the driver cannot run inside an async runtime.
    pub fn sql<T: Send>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut client = loop {
                    match postgres::Client::connect(&self.admin, postgres::NoTls) {
                        Ok(c) => break c,
                        Err(e) if Instant::now() > deadline => {
                            panic!("postgres did not come up: {e}\n{}", self.proc.log())
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                };
                f(&mut client)
            })
            .join()
            .expect("postgres client thread")
        })
    }
}

/// Start the fixture over HTTP; `url` is its `/mcp` endpoint.
pub fn fixture_http() -> Proc {
    let port = free_port();
    let mut cmd = Command::new(bin("warden-fixture"));
    cmd.args(["--http", &format!("127.0.0.1:{port}")]);
    spawn_logged(cmd, tempdir("fixture"), port)
}

/// Start the deliberately vulnerable server (`warden-vulnerable`) over HTTP with `env` (its
/// `VULN_*` settings); `url` is its `/mcp` endpoint.
pub fn vulnerable_http(env: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut cmd = Command::new(bin("warden-vulnerable"));
    cmd.args(["--http", &format!("127.0.0.1:{port}")]).envs(env.iter().copied());
    spawn_logged(cmd, tempdir("vulnerable"), port)
}

/// Start `cmd` with stderr to `dir/stderr.log`; wait for its `/mcp` endpoint on `port`.
pub fn spawn_logged(mut cmd: Command, dir: PathBuf, port: u16) -> Proc {
    let err = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let child = cmd.stdout(Stdio::null()).stderr(err).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    wait_http(&url);
    Proc { child, url, dir }
}

/// HAProxy (the Debian package) on loopback in front of `backends` (`127.0.0.1:port` each):
/// HTTP mode, round-robin per request with no stickiness, health checks on `/healthz` every
/// 200 ms. `url` is its `/mcp`.
pub fn haproxy(backends: &[String]) -> Proc {
    let port = free_port();
    let dir = tempdir("haproxy");
    let servers: String = backends.iter().enumerate().map(|(i, b)| format!("  server w{i} {b} check\n")).collect();
    let cfg = format!(
        "global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  \
         timeout server 30s\n  retries 2\n  option redispatch\nfrontend fe\n  bind 127.0.0.1:{port}\n  \
         default_backend be\nbackend be\n  balance roundrobin\n  option httpchk GET /healthz\n  \
         default-server inter 200ms fall 2 rise 2\n{servers}"
    );
    std::fs::write(dir.join("haproxy.cfg"), cfg).unwrap();
    let exe = if std::path::Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
    let mut cmd = Command::new(exe);
    cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
    spawn_logged(cmd, dir, port)
}

/// The TOML of a stdio upstream running the fixture.
pub fn fixture_stdio_upstream(name: &str, namespace: Option<&str>, extra: &str) -> String {
    let ns = namespace.map(|n| format!("namespace = {n:?}\n")).unwrap_or_default();
    format!(
        "[[upstream]]\nname = {name:?}\n{ns}transport = \"stdio\"\ncommand = {:?}\nargs = [\"--stdio\"]\n{extra}\n",
        bin("warden-fixture").display().to_string()
    )
}

/// Start `warden serve` with `[listen]` filled in and `upstreams` appended.
/// A rule that allows everything, for tests about other things than authorization.
pub const ALLOW_ALL: &str =
    "\n[[rule]]\nid = \"test-allow-all\"\ntools = [\"*\"]\nresources = [\"*\"]\nprompts = [\"*\"]\n";

/// Start `warden serve` with `upstreams` (and whatever else follows them); configs without a
/// `[[rule]]` get [`ALLOW_ALL`].
pub fn warden(listen_extra: &str, upstreams: &str) -> Proc {
    warden_with_env(listen_extra, upstreams, &[])
}

/// [`warden`] with extra environment variables for the Warden process.
pub fn warden_with_env(listen_extra: &str, upstreams: &str, env: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let dir = tempdir("warden");
    let rules = if upstreams.contains("[[rule]]") { "" } else { ALLOW_ALL };
    let cfg = format!("[listen]\naddr = \"127.0.0.1:{port}\"\n{listen_extra}\n\n{upstreams}\n{rules}");
    std::fs::write(dir.join("warden.toml"), &cfg).unwrap();
    let mut cmd = Command::new(bin("warden"));
    cmd.args(["serve", "--config"]).arg(dir.join("warden.toml")).env("RUST_LOG", "info").envs(env.iter().copied());
    spawn_logged(cmd, dir, port)
}

/// Start `warden serve` on an existing config file listening on `port`.
pub fn warden_config(cfg: &std::path::Path, port: u16) -> Proc {
    warden_config_with(cfg, port, &[])
}

/// [`warden_config`] with more arguments to `warden serve`.
pub fn warden_config_with(cfg: &std::path::Path, port: u16, args: &[&str]) -> Proc {
    let dir = cfg.parent().unwrap().to_path_buf();
    let mut cmd = Command::new(bin("warden"));
    cmd.args(["serve", "--config"]).arg(cfg).args(args).env("RUST_LOG", "info");
    spawn_logged(cmd, dir, port)
}

/// What came back for one HTTP request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// JSON-RPC messages (from a JSON body or SSE events).
    pub messages: Vec<Value>,
    /// SSE event ids, in order (priming event included).
    pub event_ids: Vec<String>,
    pub raw: String,
}

impl Reply {
    /// The message that answers request `id`.
    pub fn answer(&self, id: i64) -> Option<&Value> {
        self.messages
            .iter()
            .find(|m| m.get("id") == Some(&json!(id)) && (m.get("result").is_some() || m.get("error").is_some()))
    }
}

/// A raw MCP Streamable HTTP client.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    /// Sent as `Authorization: Bearer …`.
    pub bearer: Option<String>,
}

pub fn init_params() -> Value {
    json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}, "elicitation": {}, "roots": {}}, "clientInfo": {"name": "warden-tests", "version": "1"}})
}

impl Client {
    pub fn new(url: &str) -> Client {
        Client {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            url: url.to_string(),
            session: None,
            bearer: None,
        }
    }

    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, &self.url).header("accept", "application/json, text/event-stream");
        if let Some(t) = &self.bearer {
            rb = rb.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            rb = rb.header("mcp-session-id", s).header("mcp-protocol-version", "2025-11-25");
        }
        rb
    }

    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.text().await.unwrap_or_default();
        let mut messages = Vec::new();
        let mut event_ids = Vec::new();
        let is_sse = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if is_sse {
            let mut d = sse::Decoder::new(64 << 20);
            for ev in d.feed(raw.as_bytes()).unwrap() {
                if let Some(id) = ev.id {
                    event_ids.push(id);
                }
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    messages.push(v);
                }
            }
        } else if let Ok(v) = serde_json::from_str::<Value>(&raw) {
            messages.push(v);
        }
        Reply { status, headers, messages, event_ids, raw }
    }

    /// POST one JSON value (or raw body) and read the whole answer.
    pub async fn post(&self, body: &Value) -> Reply {
        Self::read(self.post_stream(body).await).await
    }

    /// POST one JSON value; the answer is left unread (to read a stream piece by piece).
    pub async fn post_stream(&self, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn initialize(&mut self) -> Value {
        let r = self.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init_params()})).await;
        assert_eq!(r.status, 200, "{}", r.raw);
        self.session = r.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
        assert!(self.session.is_some(), "no session id");
        let n = self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(n.status, 202);
        r.messages[0]["result"].clone()
    }

    /// Send a request and return its answer message (result or error).
    pub async fn call(&self, id: i64, method: &str, params: Value) -> Value {
        let r = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        r.answer(id).cloned().unwrap_or_else(|| panic!("no answer to {method}: {} {}", r.status, r.raw))
    }

    pub async fn tool(&self, id: i64, name: &str, args: Value) -> Value {
        self.call(id, "tools/call", json!({"name": name, "arguments": args})).await
    }
}

/// An HTTP receiver on loopback standing in for a SIEM or an OpenTelemetry collector: it
/// answers every POST with `status` (settable: 503 plays a destination that is down) and keeps
/// what it accepted (2xx) with the path and headers.
pub struct Collector {
    pub url: String,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    pub accepted: std::sync::Arc<parking_lot::Mutex<Vec<Received>>>,
    /// Requests answered with something other than 2xx.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

pub async fn collector(status: u16) -> Collector {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let c = Collector {
        url,
        status: std::sync::Arc::new(status.into()),
        accepted: Default::default(),
        refused: Default::default(),
    };
    let (st, acc, refused) = (c.status.clone(), c.accepted.clone(), c.refused.clone());
    let app = axum::Router::new().fallback(move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
        let (st, acc, refused) = (st.clone(), acc.clone(), refused.clone());
        async move {
            let code = http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
            if code.is_success() {
                acc.lock().push(Received { path: uri.path().to_string(), headers, body: body.to_vec() });
            } else {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            code
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    c
}

/// The JSON-RPC messages of one SSE answer, read as they arrive (a call whose answer waits on
/// a question to the client, for example).
pub struct SseMessages {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    dec: sse::Decoder,
    seen: Vec<Value>,
    deadline: tokio::time::Instant,
}

impl SseMessages {
    /// Read `resp`'s stream for at most `within`.
    pub fn new(resp: reqwest::Response, within: Duration) -> SseMessages {
        use futures::StreamExt;
        SseMessages {
            stream: resp.bytes_stream().boxed(),
            dec: sse::Decoder::new(1 << 20),
            seen: Vec::new(),
            deadline: tokio::time::Instant::now() + within,
        }
    }

    /// The first message not taken yet for which `pred` holds. Panics when the stream stalls past
    /// the deadline or ends first.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        use futures::StreamExt;
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return self.seen.remove(i);
            }
            let chunk = tokio::time::timeout_at(self.deadline, self.stream.next())
                .await
                .expect("the stream stalled")
                .expect("the stream ended")
                .unwrap();
            let events = self.dec.feed(&chunk).unwrap();
            self.seen.extend(events.into_iter().filter_map(|ev| serde_json::from_str(&ev.data).ok()));
        }
    }
}
