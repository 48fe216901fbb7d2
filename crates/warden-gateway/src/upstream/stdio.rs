//! A stdio upstream: a child process speaking newline-delimited JSON-RPC.
//!
//! The child gets a cleared environment (only the allow-listed and declared variables) and runs
//! inside the sandbox its spec describes (`warden-sandbox`: Warden's own binary re-executed as a
//! helper that restricts itself, then runs the server). Its stderr goes to Warden's log (never to
//! clients); the helper's report line (the first one only: later ones are the server's) is
//! logged as what the sandbox applied, a layer not in force at WARN, and kept for `/readyz`. It
//! runs in its own process group, which is shut down in stages: close stdin, then SIGTERM, then
//! SIGKILL, and a final SIGKILL to the whole group.

use super::{Incoming, IncomingTx, Spec};
use crate::framing::{self, Line};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use warden_protocol::jsonrpc::{Message, DEFAULT_MAX_DEPTH};

const STAGE_WAIT: Duration = Duration::from_secs(2);

static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// The binary that acts as the sandbox helper (`warden` itself: it answers `__sandbox`). Set once
/// at startup; without it a sandboxed upstream does not start.
pub fn set_sandbox_helper(path: PathBuf) {
    let _ = HELPER.set(path);
}

/// The sandbox helper, when set (`GET /admin/config` probes the sandbox with it).
pub fn sandbox_helper() -> Option<PathBuf> {
    HELPER.get().cloned()
}

pub struct StdioTransport {
    stdin: parking_lot::Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// The last lines of the child's stderr, for [`StdioTransport::sandbox_advice`].
    stderr: Arc<StderrTail>,
    child: tokio::sync::Mutex<Option<Child>>,
    /// The child's process group (its pid); 0 once the group has been ended.
    pgid: std::sync::atomic::AtomicU32,
    /// What the sandbox applied (the helper's report); empty when the server runs without one.
    report: Arc<OnceLock<warden_sandbox::Report>>,
    name: String,
}

/// One line the child wrote on stderr: the sandbox helper's report and errors are Warden's own
/// messages; anything else is the server's. Only the first report line is the helper's (it
/// writes it just before it runs the server, and a server without a sandbox has its report
/// preset): a later one is the server's own words, and logged as such.
fn log_stderr(upstream: &str, line: &[u8], report: &OnceLock<warden_sandbox::Report>) {
    let text = String::from_utf8_lossy(line);
    if let Some(json) = text.strip_prefix(warden_sandbox::REPORT_PREFIX).filter(|_| report.get().is_none()) {
        match warden_sandbox::Report::parse(json.trim()) {
            Some(r) => {
                tracing::info!(upstream, layers = %r.summary(), "sandbox applied");
                for l in &r.layers {
                    tracing::debug!(upstream, layer = %l.name, state = %l.state, detail = %l.detail, "sandbox layer");
                }
                warn_gaps(upstream, &r);
                let _ = report.set(r);
            }
            None => tracing::warn!(upstream, "unreadable sandbox report"),
        }
    } else if text.starts_with("warden sandbox:") {
        tracing::error!(upstream, message = %excerpt(line), "sandbox");
    } else {
        tracing::info!(upstream, stderr = %excerpt(line), "upstream stderr");
    }
}

/// A layer not in force is logged at WARN: on an upstream's first start, and again whenever the
/// layers missing change (every session starts its own server; the same gap is not repeated).
fn warn_gaps(upstream: &str, r: &warden_sandbox::Report) {
    static WARNED: OnceLock<parking_lot::Mutex<std::collections::HashMap<String, String>>> = OnceLock::new();
    let gaps = r.gaps();
    let said = gaps.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let mut warned = WARNED.get_or_init(Default::default).lock();
    if warned.get(upstream) == Some(&said) {
        return;
    }
    if !gaps.is_empty() {
        tracing::warn!(
            upstream,
            missing = %said,
            "sandbox layer(s) NOT in force for this server (set [upstream.sandbox] strict = true to refuse to start without them)"
        );
    }
    // bounded by the configured upstreams
    warned.insert(upstream.to_string(), said);
}

/// The last [`TAIL_LINES`] lines a child wrote on stderr (each cut to 300 characters), and
/// whether it has closed stderr.
#[derive(Default)]
struct StderrTail {
    lines: parking_lot::Mutex<std::collections::VecDeque<String>>,
    closed: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

const TAIL_LINES: usize = 40;

impl StderrTail {
    fn push(&self, line: &[u8]) {
        let mut l = self.lines.lock();
        if l.len() == TAIL_LINES {
            l.pop_front();
        }
        l.push_back(String::from_utf8_lossy(line).chars().take(300).collect());
    }
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }
    /// Wait (at most `max`) for the child to close stderr, so its last words are in.
    async fn settled(&self, max: Duration) {
        let wait = async {
            loop {
                let n = self.notify.notified();
                if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                n.await;
            }
        };
        let _ = tokio::time::timeout(max, wait).await;
    }
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(200).collect()
}

impl StdioTransport {
    pub fn spawn(spec: &Spec, incoming: IncomingTx) -> Result<StdioTransport, String> {
        // A pinned program: the file hashed is the file run (resolved as the child would, and
        // run by that absolute path).
        let program = match &spec.program_sha256 {
            Some(want) => {
                let path = spec.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| std::ffi::OsStr::new(v.as_str()));
                super::program::verify(&spec.command, want, path, spec.cwd.as_deref())
                    .inspect_err(|e| {
                        tracing::error!(upstream = %spec.name, error = %e, "stdio upstream not started: its program changed");
                    })?
                    .display()
                    .to_string()
            }
            None => spec.command.clone(),
        };
        let mut cmd = match &spec.sandbox {
            Some(policy) => {
                let helper =
                    HELPER.get().ok_or("the sandbox helper is not available (run through the warden binary)")?;
                let (helper, argv) = warden_sandbox::wrap(helper, policy, &program, &spec.args);
                let mut c = Command::new(helper);
                c.args(argv);
                c
            }
            None => {
                let mut c = Command::new(&program);
                c.args(&spec.args);
                c
            }
        };
        cmd.env_clear()
            .process_group(0)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(d) = &spec.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", spec.command))?;
        let name = spec.name.clone();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut stdin = child.stdin.take().expect("piped");
        let pgid = child.id();
        match &spec.sandbox {
            Some(_) => tracing::info!(upstream = %name, pid = pgid, "started stdio upstream in its sandbox"),
            None => {
                tracing::warn!(upstream = %name, pid = pgid, "started stdio upstream WITHOUT a sandbox (sandbox.enabled = false)")
            }
        }

        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
            // dropping stdin closes the child's input
        });

        let n = name.clone();
        let max_line = spec.max_message_bytes;
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout);
            loop {
                match framing::read_line(&mut r, max_line).await {
                    Ok(Line::Data(b)) if b.iter().all(u8::is_ascii_whitespace) => {}
                    Ok(Line::Data(b)) => match Message::parse(&b, DEFAULT_MAX_DEPTH) {
                        Ok(msg) => {
                            if !incoming.send(Incoming::Message { msg, related: None }) {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(upstream = %n, error = %e, line = %excerpt(&b), "upstream wrote a non-JSON-RPC line to stdout; ignored")
                        }
                    },
                    Ok(Line::TooLong) => {
                        // Its id cannot be read without buffering it: the connection is ended,
                        // so the calls waiting on it fail now rather than at their timeout.
                        tracing::warn!(upstream = %n, max_line, "upstream wrote a message over the size limit; connection ended");
                        let _ =
                            incoming.send(Incoming::Closed(format!("upstream wrote a message over {max_line} bytes")));
                        break;
                    }
                    Ok(Line::Eof) | Err(_) => {
                        let _ = incoming.send(Incoming::Closed("process exited".into()));
                        break;
                    }
                }
            }
        });

        let n = name.clone();
        let tail = Arc::new(StderrTail::default());
        let t = tail.clone();
        let report = Arc::new(OnceLock::new());
        if spec.sandbox.is_none() {
            let _ = report.set(warden_sandbox::Report::default());
        }
        let rep = report.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr);
            loop {
                match framing::read_line(&mut r, 64 << 10).await {
                    Ok(Line::Data(b)) => {
                        log_stderr(&n, &b, &rep);
                        t.push(&b);
                    }
                    Ok(Line::TooLong) => {
                        tracing::info!(upstream = %n, "upstream stderr: over-long line")
                    }
                    Ok(Line::Eof) | Err(_) => break,
                }
            }
            t.close();
        });

        Ok(StdioTransport {
            stdin: parking_lot::Mutex::new(Some(tx)),
            stderr: tail,
            child: tokio::sync::Mutex::new(Some(child)),
            pgid: std::sync::atomic::AtomicU32::new(pgid.unwrap_or(0)),
            report,
            name,
        })
    }

    /// What the sandbox applied, once the helper has reported (an empty report: no sandbox).
    pub fn sandbox_report(&self) -> Option<warden_sandbox::Report> {
        self.report.get().cloned()
    }

    /// After the server failed at start: what the sandbox refused it, as advice for the
    /// operator — its arguments that the sandbox cannot read, and the paths its stderr says it
    /// was refused. `None` without a sandbox or when nothing points at one.
    pub async fn sandbox_advice(&self, spec: &Spec) -> Option<String> {
        let policy = spec.sandbox.as_ref()?;
        self.stderr.settled(Duration::from_millis(500)).await;
        let cwd = match &spec.cwd {
            Some(d) => d.clone(),
            None => std::env::current_dir().unwrap_or_default(),
        };
        let mut blocked = warden_sandbox::blocked_arguments(policy, &spec.command, &spec.args, &cwd);
        let lines: Vec<String> = self.stderr.lines.lock().iter().cloned().collect();
        for b in warden_sandbox::blocked_in_stderr(policy, &spec.command, lines.iter().map(String::as_str)) {
            if !blocked.iter().any(|a| b.path().starts_with(a.path())) {
                blocked.push(b);
            }
        }
        if blocked.is_empty() {
            return None;
        }
        let add = |d: &std::path::Path| {
            format!(
                "read_only = [{:?}] to [upstream.sandbox] (warden scan: --read-only {0:?})",
                d.display().to_string()
            )
        };
        let advice: Vec<String> = blocked.iter().map(|b| b.advice(&add)).collect();
        tracing::warn!(upstream = %self.name, advice = %advice.join("; "), "sandboxed server failed at start");
        Some(advice.join("; "))
    }

    pub fn send(&self, msg: &Message) -> Result<(), String> {
        let mut line = msg.to_json();
        line.push('\n');
        match &*self.stdin.lock() {
            Some(tx) => tx.send(line).map_err(|_| "process input closed".to_string()),
            None => Err("process input closed".into()),
        }
    }

    /// Close stdin, then SIGTERM, then SIGKILL, waiting a little at each stage.
    pub async fn close(&self) {
        self.stdin.lock().take();
        let Some(mut child) = self.child.lock().await.take() else {
            return;
        };
        if let Ok(Ok(status)) = tokio::time::timeout(STAGE_WAIT, child.wait()).await {
            tracing::info!(upstream = %self.name, %status, "stdio upstream exited");
        } else {
            self.signal_group(nix::sys::signal::Signal::SIGTERM);
            if let Ok(Ok(status)) = tokio::time::timeout(STAGE_WAIT, child.wait()).await {
                tracing::info!(upstream = %self.name, %status, "stdio upstream exited after SIGTERM");
            } else {
                let _ = child.kill().await;
                tracing::warn!(upstream = %self.name, "stdio upstream killed after ignoring SIGTERM");
            }
        }
        // whatever it started and left behind in its group
        self.end_group();
    }

    fn signal_group(&self, sig: nix::sys::signal::Signal) {
        killpg(self.pgid.load(std::sync::atomic::Ordering::Relaxed), sig);
    }

    /// SIGKILL to the whole group, once.
    fn end_group(&self) {
        killpg(self.pgid.swap(0, std::sync::atomic::Ordering::Relaxed), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Signal a process group; 0 means none.
fn killpg(pgid: u32, sig: nix::sys::signal::Signal) {
    if pgid != 0 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid as i32), sig);
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        self.end_group();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The helper writes its report before the server runs: a report line after it is the
    /// server's own, and cannot claim a sandbox it does not have (nor can a server without one).
    #[test]
    fn only_the_first_report_line_is_the_helpers() {
        let weak = r#"warden-sandbox: {"layers":[{"name":"seccomp","state":"unavailable","detail":"EINVAL"}]}"#;
        let forged = r#"warden-sandbox: {"layers":[{"name":"seccomp","state":"active","detail":""}]}"#;
        let report = OnceLock::new();
        log_stderr("t", weak.as_bytes(), &report);
        log_stderr("t", forged.as_bytes(), &report);
        assert!(report.get().unwrap().missing().contains(&"seccomp"));
        let unsandboxed = OnceLock::new();
        let _ = unsandboxed.set(warden_sandbox::Report::default());
        log_stderr("t", forged.as_bytes(), &unsandboxed);
        assert_eq!(unsandboxed.get().unwrap().missing(), warden_sandbox::LAYERS.to_vec());
    }
}
