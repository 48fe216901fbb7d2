//! Tenant isolation: with tenant A's credentials, try to list, call, read, get, complete,
//! subscribe to, approve, reuse a session of, or query anything of tenant B. Every attempt fails,
//! and fails exactly like asking for something that does not exist.

use crate::approval::admin_section;
use crate::authz::{client, error, key};
use serde_json::{json, Value};
use warden_testkit::harness::{fixture_stdio_upstream, warden, Client};

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

async fn listed(c: &Client, method: &str, field: &str, k: &str) -> Vec<String> {
    let v = c.call(90, method, json!({})).await;
    let mut n: Vec<String> =
        v["result"][field].as_array().unwrap().iter().map(|t| t[k].as_str().unwrap().into()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn tenant_a_reaches_nothing_of_tenant_b() {
    let dir = std::env::temp_dir().join(format!("warden-tenants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for t in ["a", "b"] {
        std::fs::write(dir.join(format!("cred-{t}")), format!("credential-of-{t}\n")).unwrap();
    }
    let cred = |t: &str| format!("{{ file = {:?} }}", dir.join(format!("cred-{t}")).display().to_string());
    // `crm`: one instance per tenant, each with its own credential; nobody else reaches it.
    let crm = fixture_stdio_upstream(
        "crm",
        Some("crm"),
        &format!(
            "tenant_only = true\n[upstream.tenants.a]\nsecret_env = {{ FIXTURE_IDENTITY = {} }}\n\
             [upstream.tenants.b]\nsecret_env = {{ FIXTURE_IDENTITY = {} }}\n",
            cred("a"),
            cred("b")
        ),
    );
    // `lab`: one shared instance, whose tools, resources and prompts rules give tenant B only.
    let lab = fixture_stdio_upstream("lab", Some("lab"), "");
    let (admin_cfg, admin) = admin_section();
    let (ka, ea) = key("ann", &["mcp", "warden:approve", "warden:admin"], &[], Some("a"));
    let (kb, eb) = key("ben", &["mcp"], &[], Some("b"));
    let (kn, en) = key("nina", &["mcp"], &[], None);
    let rules = r#"
[[rule]]
id = "crm-for-tenants"
servers = ["crm"]
tools = ["whoami", "echo"]
[[rule]]
id = "crm-writes-approved"
servers = ["crm"]
tools = ["slow"]
approval = "admin"
[[rule]]
id = "lab-for-b"
servers = ["lab"]
tenants = ["b"]
tools = ["echo"]
resources = ["test://*"]
prompts = ["test_simple_prompt", "test_prompt_with_arguments"]
[approval]
wait_secs = 3
"#;
    let w = warden("", &format!("{crm}\n{lab}\n[auth]\n{ea}{eb}{en}\n{admin_cfg}\n{rules}"));
    let a = client(&w, &ka).await;
    let b = client(&w, &kb).await;
    let n = client(&w, &kn).await;

    // Listings: each tenant sees what its rules give it, and its own crm instance answers.
    assert_eq!(listed(&a, "tools/list", "tools", "name").await, ["crm__echo", "crm__slow", "crm__whoami"]);
    assert_eq!(listed(&b, "tools/list", "tools", "name").await, ["crm__echo", "crm__slow", "crm__whoami", "lab__echo"]);
    assert!(listed(&n, "tools/list", "tools", "name").await.is_empty(), "no tenant: no per-tenant upstream");
    assert_eq!(text(&a.tool(1, "crm__whoami", json!({})).await), "credential-of-a");
    assert_eq!(text(&b.tool(1, "crm__whoami", json!({})).await), "credential-of-b");
    for (method, field) in [
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
        ("prompts/list", "prompts"),
    ] {
        let v = a.call(2, method, json!({})).await;
        assert_eq!(v["result"][field], json!([]), "{method}: {v}");
        let v = b.call(2, method, json!({})).await;
        assert!(v["result"].get(field).is_some(), "{method}: {v}");
    }
    assert!(!listed(&b, "resources/list", "resources", "uri").await.is_empty());

    // Calls, reads, gets, completions and subscriptions: refused exactly like what does not exist.
    let no_tool = error(&a.tool(3, "lab__no_such_tool", json!({})).await);
    assert_eq!(error(&a.tool(3, "lab__echo", json!({"text": "x"})).await), no_tool);
    assert_eq!(error(&n.tool(3, "crm__whoami", json!({})).await), error(&n.tool(3, "crm__no_such", json!({})).await));
    let uri = "warden://lab/test://static-text";
    assert!(b.call(4, "resources/read", json!({"uri": uri})).await.get("result").is_some());
    let no_res = error(&a.call(4, "resources/read", json!({"uri": "warden://lab/test://nope"})).await);
    assert_eq!(error(&a.call(4, "resources/read", json!({"uri": uri})).await), no_res);
    assert_eq!(
        error(&a.call(4, "resources/subscribe", json!({"uri": "warden://lab/test://watched-resource"})).await),
        no_res
    );
    assert_eq!(error(&n.call(4, "resources/read", json!({"uri": "warden://crm/test://static-text"})).await), no_res);
    let no_prompt = error(&a.call(5, "prompts/get", json!({"name": "lab__nope"})).await);
    assert_eq!(error(&a.call(5, "prompts/get", json!({"name": "lab__test_simple_prompt"})).await), no_prompt);
    assert!(b.call(5, "prompts/get", json!({"name": "lab__test_simple_prompt"})).await.get("result").is_some());
    let complete = json!({"ref": {"type": "ref/prompt", "name": "lab__test_prompt_with_arguments"},
                          "argument": {"name": "arg1", "value": "a"}});
    assert_eq!(error(&a.call(6, "completion/complete", complete).await), no_prompt);

    // B's session id in A's hands (and the other way) gets nothing.
    let stolen = Client { session: b.session.clone(), bearer: Some(ka.clone()), ..Client::new(&w.url) };
    let r = stolen.post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})).await;
    assert_eq!(r.status, 404, "{}", r.raw);
    assert!(!r.raw.contains("lab__echo"));

    // B's approval: invisible to A's approver, and A cannot decide it.
    let held = tokio::spawn({
        let c = Client { session: b.session.clone(), bearer: b.bearer.clone(), ..Client::new(&w.url) };
        async move { c.tool(8, "crm__slow", json!({"ms": 1})).await }
    });
    let http = reqwest::Client::new();
    let pending = crate::approval::one_pending(&admin, "an-admin-token-that-is-long-enough-0123456789").await;
    let id = pending["id"].as_str().unwrap();
    let v: Value = http.get(format!("{admin}/approvals")).bearer_auth(&ka).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["approvals"], json!([]), "{v}");
    for (method, url) in [
        ("GET", format!("{admin}/approvals/{id}")),
        ("POST", format!("{admin}/approvals/{id}/approve")),
        ("POST", format!("{admin}/approvals/{id}/deny")),
    ] {
        let r = http.request(method.parse().unwrap(), &url).bearer_auth(&ka).send().await.unwrap();
        assert_eq!(r.status(), 404, "{method} {url}");
    }
    // A tenant's admin cannot touch the kill switches every tenant shares; a caller key neither.
    assert_eq!(http.get(format!("{admin}/kill-switches")).bearer_auth(&ka).send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("{admin}/approvals")).bearer_auth(&kb).send().await.unwrap().status(), 403);
    let e = error(&held.await.unwrap());
    assert_eq!(e["data"]["state"], "pending", "still undecided: {e}");
}
