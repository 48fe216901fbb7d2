//! A stdio upstream: a child process speaking newline-delimited JSON-RPC.
//!
//! The child gets a cleared environment (only the allow-listed and declared variables), its
//! stderr goes to Warden's log (never to clients), and it is shut down in stages: close stdin,
//! then SIGTERM, then SIGKILL. Sandboxing (Landlock, seccomp, namespaces) arrives with the
//! isolation issue.

use super::{Incoming, IncomingTx, Spec};
use crate::framing::{self, Line};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use warden_protocol::jsonrpc::{Message, DEFAULT_MAX_DEPTH};

const STAGE_WAIT: Duration = Duration::from_secs(2);

pub struct StdioTransport {
    stdin: parking_lot::Mutex<Option<mpsc::UnboundedSender<String>>>,
    child: tokio::sync::Mutex<Option<Child>>,
    name: String,
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(200).collect()
}

impl StdioTransport {
    pub fn spawn(spec: &Spec, incoming: IncomingTx) -> Result<StdioTransport, String> {
        let mut cmd = Command::new(&spec.command);
        cmd.args(&spec.args)
            .env_clear()
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
        tracing::info!(upstream = %name, pid = child.id(), "started stdio upstream");

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
                    Ok(Line::Data(b)) => {
                        tracing::info!(upstream = %n, stderr = %excerpt(&b), "upstream stderr")
                    }
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
            return;
        }
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        if let Ok(Ok(status)) = tokio::time::timeout(STAGE_WAIT, child.wait()).await {
            tracing::info!(upstream = %self.name, %status, "stdio upstream exited after SIGTERM");
            return;
        }
        let _ = child.kill().await;
        tracing::warn!(upstream = %self.name, "stdio upstream killed after ignoring SIGTERM");
    }
}
