//! mcp-server-git: CVE-2025-68144 (a diff "target" that is really an option, `--output=FILE`,
//! writes any file), CVE-2025-68145 (the repository restriction checked by string prefix) and
//! CVE-2025-68143 (`git_init` creates a repository anywhere). Warden's argv guard refuses option
//! injection and its path guard confines the repository argument.

use crate::common::*;
use serde_json::json;
use warden_testkit::harness::{vulnerable_http, warden};

fn git(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("git").args(args).current_dir(dir).output().expect("git (scripts/setup.sh)");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn cve_2025_68143_68144_68145_git_argument_and_path_injection_is_refused() {
    let d = dir("git");
    let root = d.join("repos");
    let repo = root.join("app");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(d.join("repos_evil")).unwrap();
    git(&["init", "-q"], &repo);
    git(&["init", "-q"], &d.join("repos_evil"));
    let log = d.join("calls.jsonl");
    let (r, l) = (root.display().to_string(), log.display().to_string());
    let up = vulnerable_http(&[("VULN_ROOT", &r), ("VULN_LOG", &l)]);
    let repo_s = repo.display().to_string();
    let out_file = |n: &str| d.join(n);
    let inject = |n: &str| format!("--output={}", out_file(n).display());
    let evil_repo = d.join("repos_evil").display().to_string();
    let init_outside = d.join("elsewhere").display().to_string();

    // Directly, each flaw works.
    let direct = client(&up.url).await;
    direct.tool(1, "git_diff", json!({"repo_path": repo_s, "target": inject("direct")})).await;
    assert!(out_file("direct").exists(), "--output wrote a file");
    let t = text(&direct.tool(2, "git_diff", json!({"repo_path": evil_repo, "target": "HEAD"})).await);
    assert!(!t.contains("outside the allowed"), "the prefix check let repos_evil through: {t}");
    direct.tool(3, "git_init", json!({"repo_path": init_outside})).await;
    assert!(d.join("elsewhere/.git").exists(), "git_init created a repository outside the root");
    std::fs::remove_dir_all(d.join("elsewhere")).unwrap();
    std::fs::remove_file(&log).unwrap();

    let guards = format!(
        "[[guard]]\nserver = \"vuln\"\ntools = [\"git_diff\"]\nargument = \"target\"\nkind = \"argv\"\n\
         [[guard]]\nserver = \"vuln\"\ntools = [\"git_*\"]\nargument = \"repo_path\"\nkind = \"path\"\nroots = [{r:?}]\nrequired = true\n"
    );
    let w = warden("", &format!("{}{guards}", http_upstream("vuln", &up.url, "")));
    let c = client(&w.url).await;
    let ok = c.tool(1, "git_diff", json!({"repo_path": repo_s, "target": "HEAD"})).await;
    assert!(!refused_by_warden(&ok), "{ok}");
    let attacks = [
        ("git_diff", json!({"repo_path": repo_s, "target": inject("via-warden")})),
        ("git_diff", json!({"repo_path": repo_s, "target": format!("HEAD {}", inject("via-warden"))})),
        ("git_diff", json!({"repo_path": evil_repo, "target": "HEAD"})),
        ("git_diff", json!({"repo_path": format!("{r}/../repos_evil"), "target": "HEAD"})),
        ("git_init", json!({"repo_path": init_outside})),
    ];
    for (i, (tool, args)) in attacks.iter().enumerate() {
        let v = c.tool(10 + i as i64, tool, args.clone()).await;
        assert!(refused_by_warden(&v), "{tool} {args}: {v}");
    }
    assert!(!out_file("via-warden").exists() && !d.join("elsewhere").exists());
    assert_eq!(received(&log).len(), 1, "only the benign diff reached the server");
    let blocked = calls_with_status(&w, "blocked_by_guard");
    assert_eq!(blocked.len(), attacks.len(), "{blocked:?}");
    let findings: Vec<&str> = blocked.iter().map(|b| b["findings"][0].as_str().unwrap()).collect();
    assert_eq!(findings.iter().filter(|f| **f == "guard.argv:refused").count(), 2, "{findings:?}");
}
