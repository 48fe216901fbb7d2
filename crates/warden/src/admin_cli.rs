//! `warden kill`, `warden revive`, `warden kills`, `warden approvals`, `warden approve`,
//! `warden deny`, `warden reload`: the admin API from a shell, using the `[admin]` address and token of the same
//! config file.

use anyhow::Context;
use serde_json::{json, Value};
use warden_gateway::config::Config;

/// The admin API's base URL (`…/admin`) and token.
fn admin(cfg: &Config) -> anyhow::Result<(String, String)> {
    let a = cfg.admin.as_ref().context("the config has no [admin] section")?;
    let token = a.token.resolve().map_err(|e| anyhow::anyhow!("admin.token: {e}"))?;
    Ok((format!("http://{}/admin", a.addr), token))
}

fn endpoint(cfg: &Config) -> anyhow::Result<(String, String)> {
    admin(cfg).map(|(base, token)| (format!("{base}/kill-switches"), token))
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

/// `POST /admin/reload`. The file was read and validated here first (`load`): an invalid one is
/// reported without asking the running Warden.
pub async fn reload(cfg: &Config) -> anyhow::Result<()> {
    let (base, token) = admin(cfg)?;
    let v = send(reqwest::Client::new().post(format!("{base}/reload")).bearer_auth(token)).await?;
    let r = &v["reloaded"];
    let upstreams: Vec<&str> = r["upstreams"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("reloaded: generation {}, {} rule(s), upstreams {}", r["generation"], r["rules"], upstreams.join(", "));
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

pub async fn approvals(cfg: &Config, state: &str) -> anyhow::Result<()> {
    let (base, token) = admin(cfg)?;
    let mut rb = reqwest::Client::new().get(format!("{base}/approvals")).bearer_auth(token);
    if state != "all" {
        rb = rb.query(&[("state", state)]);
    }
    let v = send(rb).await?;
    let list = v["approvals"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no {} approvals", if state == "all" { "" } else { state });
    }
    for a in list {
        println!(
            "{}\t{}\t{} / {}\tby {}{}\t{}{}",
            a["id"].as_str().unwrap_or(""),
            a["state"].as_str().unwrap_or(""),
            a["server"].as_str().unwrap_or(""),
            a["tool"].as_str().unwrap_or(""),
            a["subject"].as_str().unwrap_or(""),
            a["tenant"].as_str().map(|t| format!(" (tenant {t})")).unwrap_or_default(),
            a["arguments"],
            a["approver"].as_str().map(|x| format!("\tdecided by {x}")).unwrap_or_default(),
        );
    }
    Ok(())
}

pub async fn decide(cfg: &Config, id: &str, approve: bool, note: Option<String>) -> anyhow::Result<()> {
    let (base, token) = admin(cfg)?;
    anyhow::ensure!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit()), "expected an approval id");
    let verdict = if approve { "approve" } else { "deny" };
    let body = json!({"by": actor(), "note": note});
    let v =
        send(reqwest::Client::new().post(format!("{base}/approvals/{id}/{verdict}")).bearer_auth(token).json(&body))
            .await?;
    let a = &v["approval"];
    println!(
        "{}: {} / {} for {} — {}",
        a["state"].as_str().unwrap_or(verdict),
        a["server"].as_str().unwrap_or(""),
        a["tool"].as_str().unwrap_or(""),
        a["subject"].as_str().unwrap_or(""),
        a["arguments"]
    );
    Ok(())
}
