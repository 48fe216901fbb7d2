//! `warden kill`, `warden revive`, `warden kills`: the admin API's kill switches from a shell,
//! using the `[admin]` address and token of the same config file.

use anyhow::Context;
use serde_json::{json, Value};
use warden_gateway::config::Config;

fn endpoint(cfg: &Config) -> anyhow::Result<(String, String)> {
    let a = cfg.admin.as_ref().context("the config has no [admin] section")?;
    let token = a.token.resolve().map_err(|e| anyhow::anyhow!("admin.token: {e}"))?;
    Ok((format!("http://{}/admin/kill-switches", a.addr), token))
}

fn actor() -> String {
    std::env::var("USER").map(|u| format!("cli:{u}")).unwrap_or_else(|_| "cli".into())
}

async fn send(rb: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let r = rb.send().await.context("the admin API is not reachable (is `warden serve` running?)")?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{status}: {}", body["error"].as_str().unwrap_or("unexpected answer"));
    Ok(body)
}

pub async fn kill(cfg: &Config, server: &str, tool: Option<&str>, reason: &str, cancel: bool) -> anyhow::Result<()> {
    let (url, token) = endpoint(cfg)?;
    let body = json!({"server": server, "tool": tool, "reason": reason, "by": actor(), "cancel_in_flight": cancel});
    send(reqwest::Client::new().post(url).bearer_auth(token).json(&body)).await?;
    println!("off: {server}{}", tool.map(|t| format!(" / {t}")).unwrap_or_default());
    Ok(())
}

pub async fn revive(cfg: &Config, server: &str, tool: Option<&str>) -> anyhow::Result<()> {
    let (url, token) = endpoint(cfg)?;
    let mut q = vec![("server", server.to_string()), ("by", actor())];
    if let Some(t) = tool {
        q.push(("tool", t.to_string()));
    }
    send(reqwest::Client::new().delete(url).bearer_auth(token).query(&q)).await?;
    println!("on: {server}{}", tool.map(|t| format!(" / {t}")).unwrap_or_default());
    Ok(())
}

pub async fn list(cfg: &Config) -> anyhow::Result<()> {
    let (url, token) = endpoint(cfg)?;
    let v = send(reqwest::Client::new().get(url).bearer_auth(token)).await?;
    let kills = v["kill_switches"].as_array().cloned().unwrap_or_default();
    if kills.is_empty() {
        println!("no kill switch is off");
    }
    for k in kills {
        println!(
            "{}{}\t{}\tby {} at {}{}",
            k["server"].as_str().unwrap_or(""),
            k["tool"].as_str().map(|t| format!(" / {t}")).unwrap_or_default(),
            k["reason"].as_str().unwrap_or(""),
            k["by"].as_str().unwrap_or(""),
            k["at"],
            if k["cancel_in_flight"] == true { " (cancelled in-flight calls)" } else { "" }
        );
    }
    Ok(())
}
