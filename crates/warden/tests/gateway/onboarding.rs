//! Issue 28: the servers a machine's MCP clients already use, found and checked before they go
//! behind Warden (`warden scan --clients`). The config files are written here in each client's
//! documented format (Claude Desktop, Claude Code user and project files, Cursor, VS Code with
//! comments and trailing commas, Windsurf), under a scratch home and project directory.

use serde_json::{json, Value};
use std::process::Command;
use warden_testkit::harness::{bin, fixture_http, tempdir};

#[test]
fn scan_finds_every_clients_servers_and_flags_poison_launchers_and_inline_secrets() {
    let (home, project) = (tempdir("home"), tempdir("project"));
    let fixture = bin("warden-fixture").display().to_string();
    let http = fixture_http();
    let descriptions = home.join("descriptions.json");
    std::fs::write(&descriptions, json!({"test_simple_text": crate::console::POISONED}).to_string()).unwrap();
    let write = |path: std::path::PathBuf, text: String| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // Claude Desktop (Linux): a poisoned local server, and an unpinned launcher with a token
    // written inline.
    write(
        home.join(".config/Claude/claude_desktop_config.json"),
        json!({"mcpServers": {
            "poisoned": {"command": fixture, "args": ["--stdio"], "env": {"FIXTURE_DESCRIPTIONS": descriptions}},
            "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                       "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_INLINE_SECRET_VALUE"}},
        }})
        .to_string(),
    );
    // Claude Code: user file (with a project's servers) and the project's `.mcp.json`.
    write(
        home.join(".claude.json"),
        json!({"numStartups": 3, "mcpServers": {"remote": {"type": "http", "url": http.url}},
               "projects": {"/src/app": {"mcpServers": {"app-local": {"type": "stdio", "command": fixture, "args": ["--stdio"], "env": {}}}}}})
        .to_string(),
    );
    write(
        project.join(".mcp.json"),
        json!({"mcpServers": {"docs": {"type": "http", "url": http.url, "headers": {"Authorization": "Bearer ${DOCS_TOKEN_NOT_SET}"}}}})
            .to_string(),
    );
    // Cursor.
    write(
        home.join(".cursor/mcp.json"),
        json!({"mcpServers": {"cursor-fx": {"command": fixture, "args": ["--stdio"]}}}).to_string(),
    );
    // VS Code: JSON with comments and trailing commas; a server that asks the user for its key.
    write(
        project.join(".vscode/mcp.json"),
        format!(
            "{{\n  // servers of this workspace\n  \"inputs\": [{{\"type\": \"promptString\", \"id\": \"api-key\", \"password\": true}}],\n  \
             \"servers\": {{\n    \"vs-fx\": {{\"type\": \"stdio\", \"command\": {fixture:?}, \"args\": [\"--stdio\"],}},\n    \
             /* asks */ \"asks-key\": {{\"type\": \"stdio\", \"command\": {fixture:?}, \"args\": [\"--stdio\"], \"env\": {{\"API_KEY\": \"${{input:api-key}}\"}}}},\n  }},\n}}\n"
        ),
    );
    // Windsurf: a remote server by `serverUrl`.
    write(
        home.join(".codeium/windsurf/mcp_config.json"),
        json!({"mcpServers": {"wind": {"serverUrl": http.url}}}).to_string(),
    );

    let scan = |more: &[&str]| {
        Command::new(bin("warden"))
            .args(["scan", "--clients", "--json"])
            .args(more)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCS_TOKEN_NOT_SET")
            .current_dir(&project)
            .output()
            .unwrap()
    };
    // The project's own files (a cloned repository's) are listed and checked, their servers
    // not started unless asked.
    let first: Value = serde_json::from_slice(&scan(&[]).stdout).unwrap();
    let vs = first["servers"].as_array().unwrap().iter().find(|s| s["name"] == "vs-fx").cloned().unwrap();
    assert!(vs["started"] == false && vs["needs"].to_string().contains("--project"), "{vs}");
    let out = scan(&["--project"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings make status 1: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["files"].as_array().unwrap().len(), 6, "{}", v["files"]);
    let servers = v["servers"].as_array().unwrap();
    let server =
        |n: &str| servers.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("{n} not found: {servers:?}"));
    for (name, client) in [
        ("poisoned", "Claude Desktop"),
        ("github", "Claude Desktop"),
        ("remote", "Claude Code"),
        ("app-local", "Claude Code"),
        ("docs", "Claude Code"),
        ("cursor-fx", "Cursor"),
        ("vs-fx", "VS Code"),
        ("asks-key", "VS Code"),
        ("wind", "Windsurf"),
    ] {
        assert_eq!(server(name)["client"], client, "{name}");
    }
    assert_eq!(servers.len(), 9);
    // Servers that need a secret are reported, not started.
    for (name, need) in
        [("github", "env GITHUB_PERSONAL_ACCESS_TOKEN"), ("docs", "$DOCS_TOKEN_NOT_SET"), ("asks-key", "input:api-key")]
    {
        let s = server(name);
        assert_eq!(s["started"], false, "{s}");
        assert!(s["needs"].to_string().contains(need) || s["inline_secrets"].to_string().contains(need), "{s}");
    }
    // The others were read, stdio ones sandboxed, HTTP ones over loopback.
    for name in ["poisoned", "remote", "app-local", "cursor-fx", "vs-fx", "wind"] {
        assert!(server(name)["offers"]["tools"].as_u64().is_some_and(|n| n > 0), "{}", server(name));
    }
    // Each definition's pin digest: the poisoned description changes that one tool's digest.
    let pin = |s: &str, t: &str| server(s)["pins"]["tools"][t].as_str().unwrap_or_default().to_string();
    assert_eq!(pin("cursor-fx", "echo"), pin("poisoned", "echo"));
    assert!(!pin("cursor-fx", "test_simple_text").is_empty());
    assert_ne!(pin("cursor-fx", "test_simple_text"), pin("poisoned", "test_simple_text"));
    let findings = v["findings"].as_array().unwrap();
    let upstream = |n: &str| server(n)["upstream"].as_str().unwrap().to_string();
    assert!(
        findings
            .iter()
            .any(|f| f["server"] == upstream("poisoned") && f["kind"] == "tool" && f["name"] == "test_simple_text"),
        "the poisoned tool is flagged: {findings:?}"
    );
    assert!(
        !findings.iter().any(|f| f["server"] == upstream("cursor-fx") && f["kind"] == "tool"),
        "a clean one is not"
    );
    let of = |n: &str, rule: &str| findings.iter().any(|f| f["name"] == n && f["rule"] == rule);
    assert!(of("github", "secret.inline") && of("github", "supply_chain.unpinned_launcher"), "{findings:?}");
    assert!(!stdout.contains("ghp_INLINE_SECRET_VALUE"), "the secret itself is never shown");
    // Secrets in arguments and URLs: found, masked in the report, never shown.
    let leaky = home.join("leaky/mcp.json");
    std::fs::create_dir_all(leaky.parent().unwrap()).unwrap();
    let leaky = leaky.with_file_name("mcp_config.json");
    std::fs::write(
        &leaky,
        json!({"mcpServers": {
            "argkey": {"command": "some-server", "args": ["--api-key", "sk-ARG_SECRET_1", "--header", "Authorization: Bearer ARG_SECRET_2"]},
            "dburl": {"command": "pg-server", "args": ["postgres://u:ARG_SECRET_3@db.example/app"]},
            "query": {"serverUrl": "https://mcp.example/mcp?api_key=URL_SECRET_4"},
        }})
        .to_string(),
    )
    .unwrap();
    let out = Command::new(bin("warden")).args(["scan", "--client-config"]).arg(&leaky).arg("--json").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("SECRET_"), "a secret was shown: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let inline = |n: &str| {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .map(|s| s["inline_secrets"].as_array().map_or(0, Vec::len))
    };
    assert_eq!((inline("argkey"), inline("dburl"), inline("query")), (Some(2), Some(1), Some(1)), "{text}");
    // The same servers, by file.
    let one = Command::new(bin("warden"))
        .args(["scan", "--client-config"])
        .arg(home.join(".cursor/mcp.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(one.status.success(), "a clean file: status 0\n{text}");
    assert!(text.contains("| Cursor | cursor-fx | stdio |") && text.contains("0 finding(s)"), "{text}");
}

/// `warden import`: client files become a config `warden check` accepts (run by the command
/// itself); a secret is never copied (inline ones and references become `{ env = … }`); with a
/// rule allowing them, the imported servers (one stdio, one HTTP) serve through Warden.
#[tokio::test]
async fn import_makes_a_config_that_serves_the_servers_and_copies_no_secret() {
    let (home, dir) = (tempdir("import-home"), tempdir("import"));
    let fixture = bin("warden-fixture").display().to_string();
    let http = fixture_http();
    let cursor = home.join(".cursor/mcp.json");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    std::fs::write(
        &cursor,
        json!({"mcpServers": {"fx": {"command": fixture, "args": ["--stdio"], "env": {"LOG_LEVEL": "info"}}}})
            .to_string(),
    )
    .unwrap();
    let windsurf = home.join("mcp_config.json");
    std::fs::write(&windsurf, json!({"mcpServers": {"remote": {"serverUrl": http.url}}}).to_string()).unwrap();
    let vscode = home.join(".vscode/mcp.json");
    std::fs::create_dir_all(vscode.parent().unwrap()).unwrap();
    std::fs::write(
        &vscode,
        json!({"servers": {
            "gh": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_NEVER_COPIED", "KEY2": "${input:api-key}"}},
            "docs": {"type": "http", "url": "https://docs.example/mcp", "headers": {"X-Api-Key": "k_NEVER_COPIED"}},
            "args": {"type": "stdio", "command": "some-server", "args": ["--api-key", "sk-NEVER_COPIED", "--port", "1"]},
            "creds": {"type": "http", "url": "https://u:NEVER_COPIED@mcp.example/mcp?token=NEVER_COPIED&x=1"},
            // An entry name that tries to write configuration after its comment line.
            "x\n[[upstream]]\nname = \"evil\"\ntransport = \"stdio\"\ncommand = \"/bin/sh\"\n[upstream.sandbox]\nenabled = false\n#": {"type": "stdio", "command": fixture, "args": ["--stdio"]},
        }})
        .to_string(),
    )
    .unwrap();
    // Secrets: the config has references only, and says where each value must go.
    let secrets = dir.join("secrets.toml");
    let out = Command::new(bin("warden")).arg("import").arg(&vscode).arg("--out").arg(&secrets).output().unwrap();
    let text = std::fs::read_to_string(&secrets).unwrap_or_default();
    assert!(!text.contains("NEVER_COPIED"), "a secret was copied:\n{text}");
    assert!(
        text.contains("\"GITHUB_PERSONAL_ACCESS_TOKEN\" = { env = \"GH_GITHUB_PERSONAL_ACCESS_TOKEN\" }"),
        "{text}"
    );
    assert!(
        text.contains("\"KEY2\" = { env = \"API_KEY\" }")
            && text.contains("\"X-Api-Key\" = { env = \"DOCS_X_API_KEY\" }"),
        "{text}"
    );
    assert!(text.contains("strict = false") && text.contains("pin a version"), "the unpinned launcher is said: {text}");
    assert!(!text.lines().any(|l| l.starts_with("[[rule]]")), "no rule allows anything: {text}");
    assert!(
        text.contains("\"--api-key\", \"SECRET-REMOVED\"") && text.contains("url = \"https://u@mcp.example/mcp?x=1\""),
        "{text}"
    );
    // The hostile name stays in its comment: one upstream per server, none unsandboxed.
    assert_eq!(text.lines().filter(|l| l.starts_with("[[upstream]]")).count(), 5, "{text}");
    assert!(!text.lines().any(|l| l.starts_with("enabled") || l == "name = \"evil\""), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // (`warden check` ran on it: it resolves the references, unset here, and says so.)
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("wrote") && said.contains("GH_GITHUB_PERSONAL_ACCESS_TOKEN"), "{said}");
    // Importing over an existing file is refused.
    let again = Command::new(bin("warden")).arg("import").arg(&vscode).arg("--out").arg(&secrets).output().unwrap();
    assert!(!again.status.success());

    // One stdio and one HTTP server: the config checks, and serves them once a rule allows.
    let cfg = dir.join("warden.toml");
    let out =
        Command::new(bin("warden")).arg("import").arg(&cursor).arg(&windsurf).arg("--out").arg(&cfg).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("# servers = [\"fx\"]") && text.contains("\"echo\""), "a suggestion names the tools: {text}");
    let port = warden_testkit::harness::free_port();
    let served = text.replace("127.0.0.1:8931", &format!("127.0.0.1:{port}"))
        + "\n[[rule]]\nid = \"imported\"\nservers = [\"fx\", \"remote\"]\ntools = [\"*\"]\n";
    std::fs::write(&cfg, served).unwrap();
    let w = warden_testkit::harness::warden_config(&cfg, port);
    let mut c = warden_testkit::harness::Client::new(&w.url);
    c.initialize().await;
    for (i, tool) in ["fx__echo", "remote__echo"].iter().enumerate() {
        let r = c.tool(i as i64 + 1, tool, json!({"text": format!("via {tool}")})).await;
        assert_eq!(r["result"]["content"][0]["text"], format!("via {tool}"), "{r}\n{}", w.log());
    }
}

/// `warden import --rewrite-clients`: each client file (every client's format, VS Code's with
/// comments) is backed up and then names Warden alone, in the form that client takes; nothing
/// is rewritten without a confirmation; `--undo` puts each file back byte for byte.
#[test]
fn rewrite_points_every_client_at_warden_and_undo_restores_byte_for_byte() {
    let home = tempdir("rewrite");
    let fixture = bin("warden-fixture").display().to_string();
    let files = [
        (".config/Claude/claude_desktop_config.json", json!({"mcpServers": {"a": {"command": fixture, "args": ["--stdio"]}}, "theme": "dark"}).to_string()),
        (".claude.json", json!({"numStartups": 2, "mcpServers": {"b": {"type": "stdio", "command": fixture, "args": ["--stdio"]}},
                                "projects": {"/p": {"mcpServers": {"c": {"type": "http", "url": "https://c.example/mcp"}}, "allowedTools": []}}}).to_string()),
        (".cursor/mcp.json", json!({"mcpServers": {"d": {"url": "https://d.example/mcp"}}}).to_string()),
        (".vscode/mcp.json", format!("{{\n  // mine\n  \"servers\": {{\n    \"e\": {{\"type\": \"stdio\", \"command\": {fixture:?}, \"args\": [\"--stdio\"],}},\n  }},\n}}\n")),
        (".codeium/windsurf/mcp_config.json", json!({"mcpServers": {"f": {"serverUrl": "https://f.example/mcp"}}}).to_string()),
    ];
    let mut paths = Vec::new();
    for (rel, text) in &files {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = home.join("warden.toml");
    let run = |args: &[&str], more: &[std::path::PathBuf]| {
        Command::new(bin("warden")).args(args).args(more).stdin(std::process::Stdio::null()).output().unwrap()
    };
    // No terminal, no --yes: the config is written, no client file touched.
    let r = run(&["import", "--out", &out.display().to_string(), "--rewrite-clients"], &paths);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("not confirmed"), "{r:?}");
    for (p, (_, text)) in paths.iter().zip(&files) {
        assert_eq!(&std::fs::read_to_string(p).unwrap(), text);
    }
    std::fs::remove_file(&out).unwrap();
    let r = run(&["import", "--out", &out.display().to_string(), "--rewrite-clients", "--yes"], &paths);
    assert!(r.status.success(), "{}\n{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    let read =
        |i: usize| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(&paths[i]).unwrap()).unwrap() };
    let url = "http://127.0.0.1:8931/mcp";
    // Claude Desktop: `warden stdio` on the new config (its file takes commands only).
    let desktop = read(0);
    assert_eq!(desktop["mcpServers"].as_object().unwrap().len(), 1);
    assert_eq!(
        desktop["mcpServers"]["warden"]["args"],
        json!(["stdio", "--config", std::path::absolute(&out).unwrap()])
    );
    assert_eq!(desktop["theme"], "dark", "the rest of the file is kept");
    let code = read(1);
    assert_eq!(code["mcpServers"], json!({"warden": {"type": "http", "url": url}}));
    assert_eq!(code["projects"]["/p"]["mcpServers"], json!({"warden": {"type": "http", "url": url}}));
    assert_eq!(code["numStartups"], 2);
    assert_eq!(read(2)["mcpServers"], json!({"warden": {"url": url}}));
    assert_eq!(read(3)["servers"], json!({"warden": {"type": "http", "url": url}}));
    assert_eq!(read(4)["mcpServers"], json!({"warden": {"serverUrl": url}}));
    // A second rewrite would replace the backups: refused, nothing changed.
    std::fs::remove_file(&out).unwrap();
    let before: Vec<String> = paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let r = run(&["import", "--out", &out.display().to_string(), "--rewrite-clients", "--yes"], &paths);
    assert!(!r.status.success(), "{r:?}");
    assert_eq!(before, paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<Vec<_>>());
    // A file the client changed since the rewrite is not put back (its changes would be lost),
    // unless forced.
    let mut changed = read(2);
    changed["mcpServers"]["added-later"] = json!({"url": "https://later.example/mcp"});
    std::fs::write(&paths[2], changed.to_string()).unwrap();
    let r = run(&["import", "--undo"], &paths[2..3]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("changed since the rewrite"), "{r:?}");
    assert!(std::fs::read_to_string(&paths[2]).unwrap().contains("added-later"));
    let r = run(&["import", "--undo", "--force"], &paths[2..3]);
    assert!(r.status.success(), "{r:?}");
    // Undo: byte for byte, backups gone.
    let r = run(&["import", "--undo"], &paths);
    assert!(r.status.success() && String::from_utf8_lossy(&r.stdout).contains("4 client file(s) restored"), "{r:?}");
    for (p, (_, text)) in paths.iter().zip(&files) {
        assert_eq!(&std::fs::read_to_string(p).unwrap(), text, "{}", p.display());
        assert!(!p.with_file_name(format!("{}.warden-backup", p.file_name().unwrap().to_str().unwrap())).exists());
    }
}
