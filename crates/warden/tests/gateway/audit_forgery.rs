//! Issue 20 finding 1, end to end through `warden audit verify`: a trail rewritten by someone
//! on the host without the signing key (a call turned `denied` with other arguments, every hash
//! recomputed from seq 1, the checkpoints dropped, the checkpoint file deleted, or everything
//! re-signed with a key file of their own) fails verification in every mode, and a Warden whose
//! key file no longer matches the pinned `[audit] public_key` refuses to start.

use crate::audit::{audit, public_key, verify};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use warden_audit::signing::SigningKey;
use warden_testkit::harness::{bin, fixture_stdio_upstream, warden, Client};

/// The forger's rewrite: calls made `denied` with other arguments; checkpoints dropped, or
/// re-signed with `resign`; every record re-linked from seq 1 with its hash recomputed.
fn forge(lines: &[String], resign: Option<&SigningKey>) -> (Vec<String>, Vec<String>) {
    let (mut out, mut cps) = (Vec::new(), Vec::new());
    let mut prev = warden_audit::event::GENESIS.to_string();
    for l in lines.iter().filter(|l| !l.is_empty()) {
        let mut v: Value = serde_json::from_str(l).unwrap();
        let chain = v["chain"].as_str().unwrap().to_string();
        if v.get("checkpoint").is_some() {
            let Some(k) = resign else { continue };
            let seq = out.len() as u64;
            let phase = v["checkpoint"]["phase"].as_str().map(str::to_string);
            let sig = k.sign(&warden_audit::Checkpoint::payload(&chain, seq, &prev, 0, phase.as_deref()));
            v["checkpoint"] = json!({"dropped": 0, "hash": prev, "key": k.public_key(), "seq": seq, "sig": sig});
            if let Some(p) = phase {
                v["checkpoint"]["phase"] = p.into();
            }
        }
        if v["kind"] == "call" {
            v["decision"] = "denied".into();
            v["args"] = json!({"text": "never sent"});
        }
        v["seq"] = (out.len() as u64 + 1).into();
        v["prev"] = prev.clone().into();
        v["hash"] = warden_audit::event::expected_hash(&v).into();
        prev = v["hash"].as_str().unwrap().to_string();
        let line = warden_policy::canonical::to_string(&v);
        if v.get("checkpoint").is_some() {
            cps.push(line.clone());
        }
        out.push(line);
    }
    (out, cps)
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[tokio::test]
async fn a_rewritten_trail_fails_verification_in_every_mode() {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let mut w = warden("", &format!("{fx}[audit]\npath = \"audit.jsonl\"\n"));
    let cfg = w.dir.join("warden.toml").display().to_string();
    let log = w.dir.join("audit.jsonl");
    let cpf = w.dir.join("audit.jsonl.checkpoints");
    let mut c = Client::new(&w.url);
    c.initialize().await;
    for i in 0..3 {
        let r = c.tool(i, "echo", json!({"text": "hello"})).await;
        assert_eq!(r["result"]["content"][0]["text"], "hello", "{r}");
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = w.child.wait();
    let key = public_key(&cfg);
    let log_s = log.display().to_string();
    let (ok, out) = verify(&cfg, &[]);
    assert!(ok, "the real trail verifies: {out}");
    let (ok, out) = audit(&["verify", "--log", &log_s, "--public-key", &key]);
    assert!(ok, "{out}");

    let orig: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    let orig_cps = std::fs::read_to_string(&cpf).unwrap();

    // Rewritten from seq 1, checkpoints dropped, the checkpoint file deleted.
    let (forged, _) = forge(&orig, None);
    write_lines(&log, &forged);
    std::fs::remove_file(&cpf).unwrap();
    for (ok, out) in [verify(&cfg, &[]), audit(&["verify", "--log", &log_s, "--public-key", &key])] {
        assert!(!ok, "{out}");
        assert!(out.contains("PROBLEM") && out.contains("no valid signed checkpoint"), "{out}");
        assert!(out.contains("no checkpoint file"), "{out}");
    }
    // … and with no key at all: never a pass.
    let (ok, out) = audit(&["verify", "--config", &cfg]);
    assert!(!ok && out.contains("no pinned checkpoint key") && out.contains("hint:"), "{out}");
    let (ok, out) = audit(&["verify", "--log", &log_s]);
    assert!(!ok && out.contains("no pinned checkpoint key"), "{out}");
    // … with the checkpoint file kept: the log no longer holds what it anchors.
    std::fs::write(&cpf, &orig_cps).unwrap();
    let (ok, out) = verify(&cfg, &[]);
    assert!(!ok && out.contains("missing from the log"), "{out}");

    // The key file swapped for the forger's, everything re-signed with it, and the pin set in
    // the config: only the pin decides, so the swap is found.
    let key_file = w.dir.join("warden-audit.key");
    std::fs::remove_file(&key_file).unwrap();
    let theirs = SigningKey::generate(&key_file).unwrap();
    let (forged, cps) = forge(&orig, Some(&theirs));
    write_lines(&log, &forged);
    write_lines(&cpf, &cps);
    let (ok, out) = audit(&["verify", "--config", &cfg, "--public-key", &key]);
    assert!(!ok && out.contains("another key than the pinned one"), "{out}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let pinned = text.replace("path = \"audit.jsonl\"\n", &format!("path = \"audit.jsonl\"\npublic_key = {key:?}\n"));
    assert_ne!(text, pinned);
    std::fs::write(&cfg, pinned).unwrap();
    let (ok, out) = audit(&["verify", "--config", &cfg]);
    assert!(!ok && out.contains("another key than the pinned one"), "{out}");

    // A Warden whose key file is not the pinned key refuses to start.
    let mut serve = Command::new(bin("warden"))
        .args(["serve", "--config", &cfg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!("a Warden with a swapped key file kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("is not the pinned audit.public_key"), "{err}");

    // The real trail back: it verifies against the pin in the config alone (no key file).
    std::fs::remove_file(&key_file).unwrap();
    write_lines(&log, &orig);
    std::fs::write(&cpf, &orig_cps).unwrap();
    let (ok, out) = audit(&["verify", "--config", &cfg]);
    assert!(ok, "{out}");
}
