//! The built-in tools end to end, over the quickstart's demo directory and database: real reads
//! and queries pass through every stage (the secret in a note is redacted, the injected email is
//! handled by the output stages), and escapes and injections are refused.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use warden_testkit::harness::{self, bin, warden, Client};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples").canonicalize().unwrap()
}

fn text(v: &Value) -> String {
    v["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text: {v}")).to_string()
}

fn is_error(v: &Value) -> bool {
    v["result"]["isError"] == true || v.get("error").is_some()
}

#[tokio::test]
async fn builtin_files_and_sql_are_confined_and_pass_through_every_stage() {
    let ex = examples();
    let up = format!(
        "[[upstream]]\nname = \"local\"\ntransport = \"builtin\"\n\
         [upstream.files]\nroots = [{:?}]\n\
         [upstream.sql]\ndatabase = {:?}\nraw_query = true\n\
         [upstream.sql.tables]\nproducts = [\"*\"]\norders = [\"*\"]\ncustomers = [\"id\", \"name\"]\n",
        ex.join("demo-files").display().to_string(),
        ex.join("demo.db").display().to_string()
    );
    let w = warden("", &up);
    let mut c = Client::new(&w.url);
    c.initialize().await;
    let list = c.call(2, "tools/list", json!({})).await;
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    for n in ["local__read_file", "local__list_directory", "local__search_files", "local__query", "local__sql"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(!names.contains(&"local__write_file"), "read-only unless configured");

    // real reads
    let r = c.tool(3, "local__read_file", json!({"path": "README.md"})).await;
    assert!(text(&r).contains("# Demo files"), "{r}");
    let r = c.tool(4, "local__list_directory", json!({"path": "notes"})).await;
    assert!(text(&r).contains("vendor-email.txt"), "{r}");
    let r = c.tool(5, "local__search_files", json!({"path": ".", "pattern": "q3"})).await;
    assert_eq!(text(&r), "reports/q3-sales.csv");
    // the API key in the note never leaves Warden
    let r = c.tool(6, "local__read_file", json!({"path": "notes/meeting-2026-11-02.md"})).await;
    assert!(text(&r).contains("tea is running low") && !r.to_string().contains("sk_live_51Hdemo"), "{r}");
    // the injected instruction in the email reaches the model fenced as data, with a warning
    let r = c.tool(7, "local__read_file", json!({"path": "notes/vendor-email.txt"})).await;
    let t = text(&r);
    assert!(t.starts_with("[Warden: ") && t.contains("override.ignore_previous") && t.contains("<untrusted-"), "{r}");

    // escapes
    let secret_outside = std::fs::read_to_string(ex.join("demo.sql")).unwrap();
    for (i, p) in [
        "../demo.sql",
        "notes/../../demo.sql",
        "/etc/passwd",
        "%2e%2e/demo.sql",
        "..\\demo.sql",
        &ex.join("demo.sql").display().to_string(),
        &format!("{}_evil/x", ex.join("demo-files").display()),
    ]
    .iter()
    .enumerate()
    {
        let r = c.tool(10 + i as i64, "local__read_file", json!({"path": p})).await;
        assert!(is_error(&r), "{p} was read: {r}");
        assert!(!r.to_string().contains("CREATE TABLE") && !r.to_string().contains("root:x:0"), "{p}: {r}");
    }
    assert!(secret_outside.contains("CREATE TABLE"));

    // real queries
    let r = c
        .tool(
            20,
            "local__query",
            json!({"table": "products", "where": [{"column": "price", "op": "<", "value": 4}], "order_by": "price"}),
        )
        .await;
    let rows = &r["result"]["structuredContent"]["rows"];
    assert_eq!(rows[0]["name"], "scone", "{r}");
    assert_eq!(rows[1]["name"], "tea", "{r}");
    let r = c.tool(21, "local__sql", json!({"query": "SELECT c.name, count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.name ORDER BY n DESC, c.name"})).await;
    assert_eq!(r["result"]["structuredContent"]["rows"][0]["name"], "Ada", "{r}");

    // refused queries: columns withheld, injections, writes
    for (i, args) in [
        json!({"table": "customers", "columns": ["card_number"]}),
        json!({"table": "customers", "where": [{"column": "email", "op": "like", "value": "%"}]}),
        json!({"table": "products", "where": [{"column": "name", "op": "=", "value": "x' OR '1'='1"}]}),
    ]
    .iter()
    .enumerate()
    {
        let r = c.tool(30 + i as i64, "local__query", args.clone()).await;
        let s = r.to_string();
        assert!(!s.contains("4111111111111111") && !s.contains("ada@example.com"), "{args}: {r}");
        if i < 2 {
            assert!(is_error(&r), "{args}: {r}");
        } else {
            assert_eq!(r["result"]["structuredContent"]["row_count"], 0, "a value stays a value: {r}");
        }
    }
    for (i, q) in [
        "SELECT card_number FROM customers",
        "SELECT 1; DROP TABLE products",
        "COMMIT; DROP SCHEMA public CASCADE;",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT load_extension('/tmp/x.so')",
        "PRAGMA query_only = 0",
        "UPDATE products SET price = 0",
    ]
    .iter()
    .enumerate()
    {
        let r = c.tool(40 + i as i64, "local__sql", json!({"query": q})).await;
        assert!(is_error(&r), "{q}: {r}");
        assert!(!r.to_string().contains("4111111111111111"), "{q}: {r}");
    }
    let r = c
        .tool(
            50,
            "local__query",
            json!({"table": "products", "columns": ["price"], "where": [{"column": "id", "op": "=", "value": 1}]}),
        )
        .await;
    assert_eq!(r["result"]["structuredContent"]["rows"][0]["price"], 3.5, "the database is unchanged: {r}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The quickstart config, as a new user's checkout has it: `warden check` fails while the admin
/// token file does not exist yet (before the script creates it), naming the reference with
/// `file:line:col`, and passes once it exists.
#[test]
fn the_quickstart_config_checks() {
    let root = harness::tempdir("quickstart-check");
    let ex = root.join("examples");
    copy_dir(&examples(), &ex);
    let _ = std::fs::remove_dir_all(root.join("warden-data"));
    let cfg = ex.join("quickstart.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line = text.lines().position(|l| l.starts_with("token = { file")).expect("admin token line") + 1;
    let out = Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a missing secret file must fail the check");
    let want = format!("{}:{line}:9: admin.token: secret file ", cfg.display());
    assert!(stderr.contains(&want) && stderr.contains("admin-token"), "want {want:?} in: {stderr}");

    std::fs::create_dir_all(root.join("warden-data")).unwrap();
    std::fs::write(root.join("warden-data/admin-token"), "a-secret-that-check-must-never-print-0123456789\n").unwrap();
    let out = Command::new(bin("warden")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)).contains("check-must-never-print"));
    assert!(
        stdout.contains("upstream local: built-in tools: files [read_file, list_directory, search_files]"),
        "{stdout}"
    );
    assert!(stdout.contains("upstream demo: sandbox:"), "{stdout}");
}
