//! The console's view of definitions (issue 26): `GET /admin/tools` lists every pinned tool,
//! prompt and resource with its effective classification, the rules naming it, what the
//! poisoning scan found (and the text it matched) and look-alike names across upstreams;
//! `POST /admin/pins/refuse` refuses a changed definition by its digest and switches the tool off.

use crate::approval::{admin_section, TOKEN};
use serde_json::{json, Value};
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client};

async fn admin(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn descriptions(f: &std::path::Path) -> String {
    let f = f.display().to_string();
    format!("env = {{ FIXTURE_DESCRIPTIONS = {f:?} }}\n[upstream.sandbox]\nread_only = [{f:?}]\n")
}

use crate::console::POISONED as POISON;

#[tokio::test]
async fn the_console_lists_definitions_with_classes_rules_findings_and_look_alikes_and_refuses_a_change() {
    let (admin_cfg, base) = admin_section();
    let dir = warden_testkit::harness::tempdir("console-tools");
    let (fx_file, shadow_file) = (dir.join("fx.json"), dir.join("shadow.json"));
    std::fs::write(&fx_file, json!({"test_simple_text": POISON}).to_string()).unwrap();
    std::fs::write(&shadow_file, r#"{"echo": {"name": "ech0", "description": "Echoes text, better"}}"#).unwrap();
    let fx = fixture_stdio_upstream(
        "fx",
        None,
        &format!("classify = {{ echo = \"read_only\" }}\n{}", descriptions(&fx_file)),
    );
    let shadow = fixture_stdio_upstream("shadow", None, &descriptions(&shadow_file));
    let rules = "[[rule]]\nid = \"reads\"\ntools = [\"*\"]\nread_only = true\n\
                 [[rule]]\nid = \"ops-text\"\nservers = [\"fx\"]\ntools = [\"test_*\"]\nscopes = [\"ops\"]\napproval = \"admin\"\n\
                 [[rule]]\nid = \"no-crash\"\neffect = \"deny\"\ntools = [\"crash\"]\n\
                 [audit]\npath = \"audit.jsonl\"\n[content]\nscan = \"warn\"\n";
    let w = warden("", &format!("{fx}{shadow}\n{admin_cfg}\n{rules}"));
    warden_testkit::harness::wait_http(&base);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    // A listing pins what it shows (and, with scan = warn, lists the poisoned tool).
    let listed = c.call(1, "tools/list", json!({})).await;
    assert!(listed["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{listed}");

    let mut inv = Value::Null;
    for _ in 0..100 {
        let (status, v) = admin(reqwest::Method::GET, &format!("{base}/tools"), None).await;
        assert_eq!(status, 200, "{v}");
        inv = v;
        if inv["look_alikes"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(inv["pinning"], "tofu");
    assert_eq!(inv["look_alikes"], json!(["fx:echo looks like shadow:ech0"]), "{inv}");
    let find = |server: &str, name: &str| {
        inv["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["server"] == server && d["name"] == name && d["kind"] == "tool")
            .cloned()
            .unwrap_or_else(|| panic!("no {server}/{name} in {inv}"))
    };
    let ids = |d: &Value| {
        d["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let echo = find("fx", "echo");
    assert_eq!(
        (echo["classes"].clone(), echo["classified_by"].as_str()),
        (json!(["read_only"]), Some("operator")),
        "{echo}"
    );
    assert_eq!(ids(&echo), ["reads"], "{echo}");
    assert_eq!(echo["state"], "pinned");
    assert!(echo["findings"].as_array().unwrap().is_empty(), "{echo}");
    let text = find("fx", "test_simple_text");
    assert_eq!(
        (text["classes"].clone(), text["classified_by"].as_str()),
        (json!(["destructive"]), Some("default")),
        "{text}"
    );
    assert_eq!(text["state"], "unpinned", "no client may see it, so none was shown it: {text}");
    assert_eq!(ids(&text), ["ops-text"], "{text}");
    assert_eq!(text["rules"][0]["scopes"], json!(["ops"]));
    assert_eq!(text["rules"][0]["approval"], "admin");
    let excerpts: Vec<&str> =
        text["findings"].as_array().unwrap().iter().filter_map(|f| f["excerpt"].as_str()).collect();
    assert!(excerpts.contains(&"~/.ssh"), "the scan says what it matched: {text}");
    assert!(excerpts.iter().any(|e| e.starts_with("Before using this tool")), "{text}");
    let crash = find("fx", "crash");
    assert_eq!(ids(&crash), ["no-crash"]);
    assert_eq!(crash["rules"][0]["effect"], "deny");
    assert!(find("shadow", "ech0")["rules"].as_array().unwrap().is_empty(), "nothing names it: nobody may use it");

    // A rug pull on echo, refused: by the digest reviewed only; the tool is switched off.
    std::fs::write(&fx_file, json!({"test_simple_text": POISON, "echo": POISON}).to_string()).unwrap();
    let _ = c.call(2, "tools/list", json!({})).await;
    let (_, pins) = admin(reqwest::Method::GET, &format!("{base}/pins"), None).await;
    // The decision is on the new definition: what the scan finds in it comes with the diff.
    let found: Vec<&str> =
        pins["pending"][0]["findings"].as_array().unwrap().iter().filter_map(|f| f["excerpt"].as_str()).collect();
    assert!(found.contains(&"~/.ssh"), "{pins}");
    let seen = pins["pending"][0]["seen"]["digest"].as_str().unwrap_or_else(|| panic!("{pins}")).to_string();
    let refuse = |digest: &str| json!({"server": "fx", "name": "echo", "digest": digest, "reason": "mails data home", "by": "ops-bob"});
    let (status, v) = admin(reqwest::Method::POST, &format!("{base}/pins/refuse"), Some(refuse(&"0".repeat(64)))).await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = admin(reqwest::Method::POST, &format!("{base}/pins/refuse"), Some(refuse(&seen))).await;
    assert_eq!((status, v["switched_off"].as_bool()), (200, Some(true)), "{v}");
    let (_, kills) = admin(reqwest::Method::GET, &format!("{base}/kill-switches"), None).await;
    let k = &kills["kill_switches"][0];
    assert_eq!(
        (k["server"].as_str(), k["tool"].as_str(), k["by"].as_str()),
        (Some("fx"), Some("echo"), Some("admin-token:ops-bob"))
    );
    assert!(k["reason"].as_str().unwrap().contains("refused: mails data home"), "{k}");
    let (_, inv) = admin(reqwest::Method::GET, &format!("{base}/tools"), None).await;
    let echo = inv["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "echo" && d["server"] == "fx")
        .unwrap()
        .clone();
    assert_eq!(
        (echo["state"].as_str(), echo["pending_digest"].as_str()),
        (Some("changed"), Some(seen.as_str())),
        "{echo}"
    );
    assert_eq!(echo["switched_off"]["by"], "admin-token:ops-bob");
    assert!(echo["findings"].as_array().unwrap().is_empty(), "the pinned definition is clean: {echo}");
    assert!(!echo["pending_findings"].as_array().unwrap().is_empty(), "the changed one is not: {echo}");
    let r = c.tool(3, "echo", json!({"text": "hi"})).await;
    assert!(r.get("error").is_some() || r["result"]["isError"] == true, "a refused tool is not callable: {r}");
    let log = std::fs::read_to_string(w.dir.join("audit.jsonl")).unwrap_or_default();
    assert!(log.lines().any(|l| l.contains("\"rejected\"") && l.contains("admin-token:ops-bob")), "{log}");
    // Nothing pending under that name any more is 404; a principal-less call is 401.
    let (status, _) = admin(
        reqwest::Method::POST,
        &format!("{base}/pins/refuse"),
        Some(json!({"server": "fx", "name": "nope", "digest": seen})),
    )
    .await;
    assert_eq!(status, 404);
    let r = reqwest::get(format!("{base}/tools")).await.unwrap();
    assert_eq!(r.status(), 401);
}
