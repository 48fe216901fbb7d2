//! Issue 20 finding 14: Warden refuses to start (and `warden check` fails) when a sandboxed
//! stdio upstream could read one of its keys: here the audit signing key beside the config,
//! with the server started in the config's directory (`cwd = "."`), and the key open to other
//! users (the tests run as root, so the server runs as an unprivileged user: a key Warden
//! created, 0600, is out of its reach; as non-root, any key beneath a grant is refused).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_testkit::harness::{bin, fixture_stdio_upstream, free_port};

/// `warden serve` on `cfg`: its exit status and stderr, or None if it is still running after
/// `wait` (then killed).
fn serve(cfg: &std::path::Path, wait: Duration) -> Option<(bool, String)> {
    let mut child = Command::new(bin("warden"))
        .args(["serve", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < wait {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Some((status.success(), err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_key_within_a_sandboxed_upstreams_reach_is_refused() {
    let dir = std::env::temp_dir().join(format!("warden-key-reach-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("warden.toml");
    let up = fixture_stdio_upstream("fx", Some(""), "cwd = \".\"\n");
    std::fs::write(
        &cfg,
        format!("[listen]\naddr = \"127.0.0.1:{}\"\n{up}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n", free_port()),
    )
    .unwrap();
    // The key exists (as `warden audit public-key` creates it) and is open to others.
    let out = Command::new(bin("warden")).args(["audit", "public-key", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success());
    let key = dir.join("warden-audit.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let (ok, err) = serve(&cfg, Duration::from_secs(30)).expect("refused at once");
    assert!(!ok);
    assert!(err.contains("upstream fx: its sandbox can read audit.signing_key"), "{err}");
    let check = Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("its sandbox can read audit.signing_key"));

    // Closed again (as Warden writes it), or out of the server's directory: it starts.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert!(serve(&cfg, Duration::from_secs(2)).is_none(), "starts and keeps running");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::rename(&key, dir.join("keys/warden-audit.key")).unwrap();
    std::fs::write(&cfg, format!("{text}\n[audit]\nsigning_key = \"keys/warden-audit.key\"\n")).unwrap();
    std::fs::write(dir.join("keys/.keep"), "").unwrap();
    // `cwd = "."` grants the whole directory, keys/ included: still refused.
    let (ok, err) = serve(&cfg, Duration::from_secs(30)).expect("refused at once");
    assert!(!ok && err.contains("audit.signing_key"), "{err}");
    // The server in a directory of its own: it starts.
    std::fs::create_dir_all(dir.join("work")).unwrap();
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("cwd = \".\"", "cwd = \"work\"")).unwrap();
    assert!(serve(&cfg, Duration::from_secs(2)).is_none(), "starts and keeps running");
    std::fs::remove_dir_all(&dir).unwrap();
}
