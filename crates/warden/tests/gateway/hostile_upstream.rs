//! Issue 20 finding 2: an upstream that lists thousands of tools, invents new names on every
//! listing, offers tens of thousands of look-alike names and storms `list_changed` must not
//! stall the gateway for anyone else: another client's calls keep a p99 under 100 ms while it
//! runs, its listings are cut at the configured cap (logged, counted in metrics), and the pin
//! file stays bounded.

use serde_json::json;
use std::time::{Duration, Instant};
use warden_testkit::harness::{bin, fixture_stdio_upstream, warden, Client};

fn flood(name: &str, tools: usize, names: &str, storm: usize) -> String {
    format!(
        "[[upstream]]\nname = {name:?}\nnamespace = {name:?}\ntransport = \"stdio\"\ncommand = {:?}\n\
         env = {{ FLOOD_TOOLS = \"{tools}\", FLOOD_NAMES = {names:?}, FLOOD_STORM = \"{storm}\" }}\n",
        bin("warden-flood").display().to_string()
    )
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_upstream_does_not_stall_other_clients() {
    let fx = fixture_stdio_upstream("fx", Some(""), "");
    let cfg = format!(
        "{fx}{}{}[content]\npin_file = \"pins.json\"\n",
        flood("flood", 3000, "fresh", 20),
        flood("alike", 60_000, "lookalike", 20)
    );
    let mut w = warden("", &cfg);
    let mut b = Client::new(&w.url);
    b.initialize().await;
    // B's first call lists (its own session's upstreams included): not part of the measure.
    let r = b.tool(1, "echo", json!({"text": "warm"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "warm", "{r}");

    // The flood: a client listing over and over (each listing is answered with a storm of
    // list_changed, which the gateway's own control connections also get).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = w.url.clone();
    let stop2 = stop.clone();
    let flooder = tokio::spawn(async move {
        let mut a = Client::new(&url);
        a.initialize().await;
        let mut listings = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let r =
                tokio::time::timeout(Duration::from_secs(60), a.call(100 + listings, "tools/list", json!({}))).await;
            assert!(r.is_ok(), "a listing never ended");
            listings += 1;
        }
        listings
    });
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut id = 10;
    while t0.elapsed() < Duration::from_secs(12) {
        let t = Instant::now();
        let r = b.tool(id, "echo", json!({"text": "hi"})).await;
        lat.push(t.elapsed());
        assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
        id += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let listings = tokio::time::timeout(Duration::from_secs(120), flooder).await.expect("the flooder ends").unwrap();
    let (p50, p99, max) = (percentile(lat.clone(), 0.5), percentile(lat.clone(), 0.99), percentile(lat.clone(), 1.0));
    eprintln!("{} calls beside {listings} flooded listings: p50 {p50:?}, p99 {p99:?}, max {max:?}", lat.len());
    assert!(listings >= 1);
    assert!(p99 < Duration::from_millis(100), "another client's p99 {p99:?} (p50 {p50:?}, max {max:?})");

    // Look-alikes are reported as one group, not 60,000 pairs.
    let ready: serde_json::Value = reqwest::get(w.url.replace("/mcp", "/readyz")).await.unwrap().json().await.unwrap();
    let alike = ready["confusable_tools"].as_array().cloned().unwrap_or_default();
    assert!(alike.len() == 1 && alike[0].as_str().unwrap().contains("more)"), "{alike:?}");

    // Bounded: listings cut at the cap (logged, audited), pins too (the fresh names of every
    // listing are not all pinned).
    let log = w.log();
    assert!(log.contains("the definitions beyond the cap are withheld"), "no log of the cut listing");
    assert!(log.contains("beyond the pins it may keep"), "no log of the full pins");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = w.child.wait();
    let pins: serde_json::Value = serde_json::from_slice(&std::fs::read(w.dir.join("pins.json")).unwrap()).unwrap();
    for (server, tools) in pins["servers"].as_object().unwrap() {
        let n = tools.as_object().unwrap().len();
        assert!(n <= 2000, "{server}: {n} pins");
    }
    let cfg = w.dir.join("warden.toml").display().to_string();
    let cut = crate::audit::records(&cfg, &["--kind", "definitions"]);
    assert!(cut.iter().any(|r| r["server"] == "alike" && r["detail"] == "over_cap"), "{cut:?}");
}
