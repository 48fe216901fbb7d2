//! CVE-2025-53110 and CVE-2025-53109 (the reference filesystem server): a directory check by
//! string prefix lets `/allowed_evil/…` pass for `/allowed`, and a symlink inside the allowed
//! directory reads whatever it points at. Warden's path guard compares paths component by
//! component and resolves symlinks against the roots.

use crate::common::*;
use serde_json::json;
use warden_testkit::harness::{vulnerable_http, warden};

#[tokio::test]
async fn cve_2025_53110_53109_prefix_and_symlink_escapes_are_refused() {
    let d = dir("fs");
    let root = d.join("allowed");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(d.join("allowed_evil")).unwrap();
    std::fs::create_dir_all(d.join("outside")).unwrap();
    std::fs::write(root.join("ok.txt"), "fine").unwrap();
    std::fs::write(d.join("allowed_evil/secret.txt"), "SECRET-BY-PREFIX").unwrap();
    std::fs::write(d.join("outside/secret.txt"), "SECRET-BY-LINK").unwrap();
    std::os::unix::fs::symlink(d.join("outside/secret.txt"), root.join("link.txt")).unwrap();
    let log = d.join("calls.jsonl");
    let (r, l) = (root.display().to_string(), log.display().to_string());
    let up = vulnerable_http(&[("VULN_ROOT", &r), ("VULN_LOG", &l)]);
    let attacks = [
        d.join("allowed_evil/secret.txt").display().to_string(),
        root.join("link.txt").display().to_string(),
        format!("{r}/../outside/secret.txt"),
    ];

    // Directly, the server is vulnerable: both secrets come back.
    let direct = client(&up.url).await;
    for (i, a) in attacks.iter().take(2).enumerate() {
        let t = text(&direct.tool(i as i64 + 1, "read_file", json!({"path": a})).await);
        assert!(t.starts_with("SECRET-BY-"), "the vulnerable server leaks {a} directly: {t}");
    }
    std::fs::remove_file(&log).unwrap();

    // Through Warden with a path guard on the argument: the allowed file reads, every escape is
    // refused before the server sees it, and each refusal is recorded.
    let guard = format!("[[guard]]\nserver = \"vuln\"\ntools = [\"read_file\"]\nargument = \"path\"\nkind = \"path\"\nroots = [{r:?}]\n");
    let w = warden("", &format!("{}{guard}", http_upstream("vuln", &up.url, "")));
    let c = client(&w.url).await;
    assert_eq!(text(&c.tool(1, "read_file", json!({"path": root.join("ok.txt")})).await), "fine");
    for (i, a) in attacks.iter().enumerate() {
        let v = c.tool(10 + i as i64, "read_file", json!({"path": a})).await;
        assert!(refused_by_warden(&v) && !v.to_string().contains("SECRET"), "{a}: {v}");
    }
    let got = received(&log);
    assert_eq!(got.len(), 1, "only the allowed read reached the server: {got:?}");
    let blocked = calls_with_status(&w, "blocked_by_guard");
    assert_eq!(blocked.len(), 3, "{blocked:?}");
    assert!(blocked.iter().all(|b| b["findings"] == json!(["guard.path:refused"]) && b["name"] == "read_file"));
}
