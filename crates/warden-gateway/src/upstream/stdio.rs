//! A stdio upstream: a child process speaking newline-delimited JSON-RPC.
//!
//! The child gets a cleared environment (only the allow-listed and declared variables) and runs
//! inside the sandbox its spec describes (`warden-sandbox`: Warden's own binary re-executed as a
//! helper that restricts itself, then runs the server). Its stderr goes to Warden's log (never to
//! clients); the helper's report line is logged as what the sandbox applied. It runs in its own
//! process group, which is shut down in stages: close stdin, then SIGTERM, then SIGKILL, and a
//! final SIGKILL to the whole group.

use super::{Incoming, IncomingTx, Spec};
use crate::framing::{self, Line};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
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

pub struct StdioTransport {
    stdin: parking_lot::Mutex<Option<mpsc::UnboundedSender<String>>>,
    child: tokio::sync::Mutex<Option<Child>>,
    /// The child's process group (its pid); 0 once the group has been ended.
    pgid: std::sync::atomic::AtomicU32,
    name: String,
}

/// One line the child wrote on stderr: the sandbox helper's report and errors are Warden's own
/// messages; anything else is the server's.
fn log_stderr(upstream: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    if let Some(json) = text.strip_prefix(warden_sandbox::REPORT_PREFIX) {
        match warden_sandbox::Report::parse(json.trim()) {
            Some(r) => {
                tracing::info!(upstream, layers = %r.summary(), "sandbox applied");
                for l in &r.layers {
                    tracing::debug!(upstream, layer = %l.name, state = %l.state, detail = %l.detail, "sandbox layer");
                }
            }
            None => tracing::warn!(upstream, "unreadable sandbox report"),
        }
    } else if text.starts_with("warden sandbox:") {
        tracing::error!(upstream, message = %excerpt(line), "sandbox");
    } else {
        tracing::info!(upstream, stderr = %excerpt(line), "upstream stderr");
    }
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(200).collect()
}

impl StdioTransport {
    pub fn spawn(spec: &Spec, incoming: IncomingTx) -> Result<StdioTransport, String> {
        let mut cmd = match &spec.sandbox {
            Some(policy) => {
                let helper =
                    HELPER.get().ok_or("the sandbox helper is not available (run through the warden binary)")?;
                let (program, argv) = warden_sandbox::wrap(helper, policy, &spec.command, &spec.args);
                let mut c = Command::new(program);
                c.args(argv);
                c
            }
            None => {
                let mut c = Command::new(&spec.command);
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
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout);
            loop {
                match framing::read_line(&mut r, framing::MAX_LINE).await {
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
                        tracing::warn!(upstream = %n, "upstream wrote an over-long line; ignored")
                    }
                    Ok(Line::Eof) | Err(_) => {
                        let _ = incoming.send(Incoming::Closed("process exited".into()));
                        break;
                    }
                }
            }
        });

        let n = name.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr);
            loop {
                match framing::read_line(&mut r, 64 << 10).await {
                    Ok(Line::Data(b)) => log_stderr(&n, &b),
                    Ok(Line::TooLong) => {
                        tracing::info!(upstream = %n, "upstream stderr: over-long line")
                    }
                    Ok(Line::Eof) | Err(_) => break,
                }
            }
        });

        Ok(StdioTransport {
            stdin: parking_lot::Mutex::new(Some(tx)),
            child: tokio::sync::Mutex::new(Some(child)),
            pgid: std::sync::atomic::AtomicU32::new(pgid.unwrap_or(0)),
            name,
        })
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
