//! The operators' console in a real browser (issue 26): headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/setup.sh`) driven by Selenium from
//! `tests/console/drive.py`, with the official Python SDK as the MCP client. The script signs
//! in, sees the upstream, switches a tool off and sees the client's call refused, approves a
//! held call and sees it complete, approves a rug-pulled definition after seeing its diff, finds
//! the call in the audit search, checks the CSP, the cookie and that a state change without
//! the CSRF token is refused, and signs out. Its screenshots go to `target/console/` (those in
//! docs/console/ were made by it).

use crate::approval::{admin_section, TOKEN};
use std::path::PathBuf;
use std::process::Command;
use warden_testkit::harness::{fixture_stdio_upstream, warden};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn an_operator_runs_the_console_in_a_real_browser() {
    let (admin_cfg, admin) = admin_section();
    let rules = "[[rule]]\nid = \"echo\"\ntools = [\"echo\"]\n\
                 [[rule]]\nid = \"rows-need-approval\"\ntools = [\"rows\"]\napproval = \"admin\"\n\
                 [approval]\nwait_secs = 30\n[audit]\npath = \"audit.jsonl\"\n";
    let dir = warden_testkit::harness::tempdir("console");
    let descriptions = dir.join("descriptions.json");
    std::fs::write(&descriptions, "{}").unwrap();
    let d = descriptions.display().to_string();
    let env = format!("env = {{ FIXTURE_DESCRIPTIONS = {d:?} }}\n[upstream.sandbox]\nread_only = [{d:?}]\n");
    let w = warden("", &format!("{}\n{admin_cfg}\n{rules}", fixture_stdio_upstream("fx", Some(""), &env)));
    warden_testkit::harness::wait_http(&admin);
    let console = admin.trim_end_matches("/admin").to_string();
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    let shots = root().join("target/console");
    let out = Command::new(python)
        .arg(root().join("tests/console/drive.py"))
        .args([&console, &w.url, TOKEN])
        .arg(&shots)
        .arg(&descriptions)
        .output()
        .expect("run tests/console/drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser run failed\n{stdout}\n{stderr}\nwarden log:\n{}", w.log());
    assert!(stdout.contains("console: all checks passed"), "{stdout}");
    // Every action was recorded under the operator's name.
    let log = std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap_or_default();
    for what in ["signed_in", "\"kill_switch\"", "approved"] {
        assert!(log.contains(what) && log.contains("console:ops-alice"), "no {what} by console:ops-alice in\n{log}");
    }
}
