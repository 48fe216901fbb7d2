//! What the CVE tests share: a Warden in front of an HTTP upstream, the audit trail's records,
//! and the calls the vulnerable upstream received.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use warden_testkit::harness::{bin, Client, Proc};

/// The TOML of an HTTP upstream named `name` at `url`, with `extra` lines.
pub fn http_upstream(name: &str, url: &str, extra: &str) -> String {
    http_upstream_ns(name, "", url, extra)
}

/// [`http_upstream`] with its tools under namespace `ns`.
pub fn http_upstream_ns(name: &str, ns: &str, url: &str, extra: &str) -> String {
    format!("[[upstream]]\nname = {name:?}\nnamespace = {ns:?}\ntransport = \"http\"\nurl = {url:?}\n{extra}\n")
}

/// The audit records of `w` matching `filter` (`warden audit query` flags).
pub fn records(w: &Proc, filter: &[&str]) -> Vec<Value> {
    let cfg = w.dir.join("warden.toml");
    let out = Command::new(bin("warden"))
        .args(["audit", "query", "--config"])
        .arg(&cfg)
        .args(["--limit", "0"])
        .args(filter)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// [`records`], polled until `done` holds (events no request waits on, such as scan and pin
/// records, are written a moment after the answer) or 10 s have passed.
pub fn records_until(w: &Proc, filter: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = records(w, filter);
        if done(&r) || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The call records of `w` with `status`.
pub fn calls_with_status(w: &Proc, status: &str) -> Vec<Value> {
    records(w, &["--kind", "call", "--status", status])
}

/// The `tools/call`s the vulnerable server logged (`VULN_LOG`), as (name, arguments).
pub fn received(log: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["name"].as_str().unwrap().to_string(), v["arguments"].clone())
        })
        .collect()
}

/// The text of a tool result (first content item).
pub fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

/// Whether a tool call was refused by Warden: a tool error naming Warden's refusal.
pub fn refused_by_warden(answer: &Value) -> bool {
    answer["result"]["isError"] == true && text(answer).starts_with("Warden refused this call")
}

/// An initialized client of `url`.
pub async fn client(url: &str) -> Client {
    let mut c = Client::new(url);
    c.initialize().await;
    c
}

/// A fresh directory for one test.
pub fn dir(tag: &str) -> PathBuf {
    let d = warden_testkit::harness::tempdir(&format!("cve-{tag}"));
    std::fs::canonicalize(&d).unwrap()
}
