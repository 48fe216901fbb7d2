//! Issue 23: config reload without dropping calls. `SIGHUP` and `POST /admin/reload` re-read the
//! file; a valid one applies to new calls (sessions opened before included) while calls in
//! flight finish; an invalid one, or one changing what needs a restart, is refused and the
//! running config keeps serving; every attempt is logged, counted and recorded.

use crate::approval::{admin_section, TOKEN};
use crate::audit::records;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client, SseMessages};

fn sighup(pid: u32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
}

fn text(v: &serde_json::Value) -> Option<&str> {
    v["result"]["content"][0]["text"].as_str()
}

async fn until_log(w: &warden_testkit::harness::Proc, what: &str, n: usize) {
    let t = Instant::now();
    while w.log().matches(what).count() < n {
        assert!(t.elapsed() < Duration::from_secs(10), "no {what:?} in the log: {}", w.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reload_under_load_drops_no_call_and_applies_to_the_next_calls() {
    let (admin, admin_url) = admin_section();
    let fx = fixture_stdio_upstream("fx", Some("one"), "");
    let w = warden("", &format!("{fx}\n{admin}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n"));
    let path = w.dir.join("warden.toml");
    let v1 = std::fs::read_to_string(&path).unwrap();

    // A session opened before any reload.
    let mut early = Client::new(&w.url);
    early.initialize().await;
    assert!(text(&early.tool(1, "one__test_simple_text", json!({})).await).is_some());

    // Load: four sessions calling without pause (slow calls too, in flight across each reload).
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..4i64 {
        let (url, failures, answered) = (w.url.clone(), failures.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(&url);
            c.initialize().await;
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(3) {
                i += 1;
                let id = worker * 1_000_000 + i;
                let (tool, args) = if i % 10 == 0 {
                    ("one__slow", json!({"ms": 300}))
                } else {
                    ("one__echo", json!({"text": "load"}))
                };
                let r = tokio::time::timeout(Duration::from_secs(10), c.tool(id, tool, args)).await;
                match r {
                    Ok(a) if a.get("result").is_some_and(|r| r["isError"] != true) => {
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(a) => failures.lock().push(format!("{tool}: {a}")),
                    Err(_) => failures.lock().push(format!("{tool}: no answer in 10 s")),
                }
            }
        }));
    }

    // 1. A valid change: a second upstream, and a rule that denies one tool.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let v2 = format!(
        "{v1}\n{}\n[[rule]]\nid = \"no-text\"\neffect = \"deny\"\ntools = [\"test_simple_text\"]\n",
        fixture_stdio_upstream("fx2", Some("two"), "")
    );
    std::fs::write(&path, &v2).unwrap();
    sighup(w.child.id());
    until_log(&w, "config reloaded", 1).await;
    // 2. An invalid file: refused, the running config keeps serving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&path, format!("{v2}\n[[rule]]\nid = \"broken\"\ntools = [\"x\"\n")).unwrap();
    sighup(w.child.id());
    until_log(&w, "config reload refused", 1).await;
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().clone();
    let n = answered.load(std::sync::atomic::Ordering::Relaxed);
    println!("reload under load: {n} calls answered, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:?}");
    assert!(n > 100, "{n}");

    // The session opened before the reload runs under the new config at its next call.
    let denied = early.tool(2, "one__test_simple_text", json!({})).await;
    assert!(text(&denied).is_none() && denied.get("error").is_some(), "the new deny rule applies: {denied}");
    assert_eq!(text(&early.tool(3, "two__echo", json!({"text": "new upstream"})).await), Some("new upstream"));
    assert!(w.log().contains("session retired: the configuration was reloaded"), "{}", w.log());
    let mut late = Client::new(&w.url);
    late.initialize().await;
    let tools = late.call(4, "tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"two__echo") && !names.contains(&"one__test_simple_text"), "{names:?}");

    // The admin API: the broken file is refused with where; a restart-only change is named.
    let http = reqwest::Client::new();
    let post = || http.post(format!("{admin_url}/reload")).bearer_auth(TOKEN).send();
    let r = post().await.unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("warden.toml:"), "{body}");
    std::fs::write(&path, v2.replace("[listen]\n", "[listen]\nmax_sessions = 7\n")).unwrap();
    let body: serde_json::Value = post().await.unwrap().json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("[listen]"), "{body}");
    std::fs::write(&path, &v1).unwrap();
    // `warden reload` from a shell: the same, through the admin API named in the file.
    let out = crate::authz::warden_cli(&["reload"], &path);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("reloaded: generation 2") && said.contains("upstreams fx"),
        "{said} {out:?}"
    );
    let gone = early.tool(5, "two__echo", json!({"text": "x"})).await;
    assert!(gone.get("error").is_some() || gone["result"]["isError"] == true, "the removed upstream: {gone}");
    assert!(text(&early.tool(6, "one__test_simple_text", json!({})).await).is_some(), "the deny rule is gone");
    let r = http.post(format!("{admin_url}/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401, "an operator only");

    // Counted and recorded.
    let m = http.get(admin_url.replace("/admin", "/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("warden_config_reloads_total{result=\"success\"} 2"), "{m}");
    assert!(m.contains("warden_config_reloads_total{result=\"refused\"} 3"), "{m}");
    // A file that does not validate is reported by the command itself, nothing sent.
    std::fs::write(&path, format!("{v1}\n[[rule]]\nid = 1\n")).unwrap();
    let out = crate::authz::warden_cli(&["reload"], &path);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("warden.toml:"), "{out:?}");
    std::fs::write(&path, &v1).unwrap();
    let cfg = path.display().to_string();
    let recs = records(&cfg, &["--kind", "config_reload"]);
    assert_eq!(recs.len(), 5, "{recs:?}");
    assert!(recs.iter().any(|r| r["subject"] == "SIGHUP" && r["status"] == "refused"), "{recs:?}");
}

/// Review finding: a question to the client open across a reload (the session retired while its
/// call waits for the client) still gets the client's answer, and its call completes.
#[tokio::test]
async fn a_question_open_across_a_reload_gets_its_answer() {
    let (admin, admin_url) = admin_section();
    let fx = fixture_stdio_upstream("fx", Some(""), "client_requests = [\"elicitation\"]\n");
    let w = warden("", &format!("{fx}\n{admin}"));
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "test_elicitation", "arguments": {"message": "Your name?"}}});
    let mut sse = SseMessages::new(c.post_stream(&body).await, Duration::from_secs(20));
    let asked = sse.until(|m| m["method"] == "elicitation/create").await;
    // The configuration is reloaded while the question is open; the client's next message
    // (its answer) is what retires the session.
    let r = reqwest::Client::new().post(format!("{admin_url}/reload")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer =
        json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}});
    assert_eq!(c.post(&answer).await.status, 202);
    let done = sse.until(|m| m["id"] == 7).await;
    assert!(done.to_string().contains("action=accept"), "{done}");
    // And a call after it runs in the new generation.
    assert_eq!(text(&c.tool(8, "echo", json!({"text": "after"})).await), Some("after"));
}

/// Review finding: `[content]` argument settings changed by a reload apply to the next call
/// (definitions are vetted again), and the pin and scan settings are refused as restart-only.
#[tokio::test]
async fn content_settings_apply_after_a_reload() {
    let (admin, admin_url) = admin_section();
    let w = warden("", &format!("{}\n{admin}", fixture_stdio_upstream("fx", Some(""), "")));
    let path = w.dir.join("warden.toml");
    let v1 = std::fs::read_to_string(&path).unwrap();
    let mut c = Client::new(&w.url);
    c.initialize().await;
    assert_eq!(text(&c.tool(1, "echo", json!({"text": "123456789012"})).await), Some("123456789012"));
    std::fs::write(&path, format!("{v1}\n[content]\nmax_string_length = 5\n")).unwrap();
    let http = reqwest::Client::new();
    let r = http.post(format!("{admin_url}/reload")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let refused = c.tool(2, "echo", json!({"text": "123456789012"})).await;
    assert!(text(&refused).is_none_or(|t| t != "123456789012"), "the new limit applies: {refused}");
    std::fs::write(&path, format!("{v1}\n[content]\nmax_string_length = 5\nscan = \"off\"\n")).unwrap();
    let body: serde_json::Value =
        http.post(format!("{admin_url}/reload")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("[content: pinning"), "{body}");
}

async fn echoes(c: &Client, id: i64) -> bool {
    text(&c.tool(id, "echo", json!({"text": "hi"})).await) == Some("hi")
}

/// Issue 23: `warden serve --watch-config` reloads when the file's content changes (a ConfigMap
/// mounted in a pod is replaced in place by the kubelet, by a rename); a broken file is refused
/// and the running config keeps serving.
#[tokio::test]
async fn a_watched_config_file_reloads_when_it_changes() {
    use warden_testkit::harness::{free_port, tempdir, warden_config_with};
    let (dir, port) = (tempdir("watch-config"), free_port());
    let path = dir.join("warden.toml");
    let base = format!("[listen]\naddr = \"127.0.0.1:{port}\"\n{}", fixture_stdio_upstream("fx", Some(""), ""));
    let replace = |text: String| {
        let tmp = dir.join(".warden.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    replace(format!("{base}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n"));
    let w = warden_config_with(&path, port, &["--watch-config"]);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    assert!(echoes(&c, 1).await);

    // Only test_simple_text allowed now: echo is refused once the file is seen to change.
    replace(format!("{base}\n[[rule]]\nid = \"simple\"\ntools = [\"test_simple_text\"]\n"));
    until_log(&w, "config reloaded", 1).await;
    assert!(!echoes(&c, 2).await, "the new rules apply");
    // A broken file: refused, logged; the running config keeps serving.
    replace(format!("{base}\n[[rule]]\nid = \"simple\"\ntools = [\"test_simple_text\"\n"));
    until_log(&w, "config reload refused", 1).await;
    assert!(!echoes(&c, 3).await);
    assert!(text(&c.tool(4, "test_simple_text", json!({})).await).is_some(), "still serving");
    // Mended: applied again. Each attempt is on record, by the watch.
    replace(format!("{base}\n[[rule]]\nid = \"all\"\ntools = [\"*\"]\n"));
    until_log(&w, "config reloaded", 2).await;
    assert!(echoes(&c, 5).await);
    let recs = records(&path.display().to_string(), &["--kind", "config_reload"]);
    let seen: Vec<(&str, &str)> =
        recs.iter().map(|r| (r["subject"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or(""))).collect();
    assert_eq!(seen.len(), 3, "{recs:?}");
    assert!(seen.iter().all(|(by, _)| *by == "config file changed"), "{seen:?}");
    assert_eq!(seen.iter().filter(|(_, s)| *s == "refused").count(), 1, "{seen:?}");
}
