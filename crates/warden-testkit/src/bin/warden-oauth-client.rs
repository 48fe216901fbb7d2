//! The conformance suite's client under test for its authorization scenarios: Warden's upstream
//! OAuth client (`warden_gateway::upstream::link`) run against one scenario's MCP server.
//!
//! `warden-oauth-client MCP_URL` (the suite appends the URL). Reads `MCP_CONFORMANCE_CONTEXT`
//! (pre-registered `client_id`/`client_secret`) and `MCP_CONFORMANCE_PROTOCOL_VERSION`. Sends a
//! request unauthenticated, follows the 401 through discovery, registration, authorization
//! (the suite's authorization endpoint answers with the redirect at once) and the token, sends
//! the request again with the token, and steps up on `insufficient_scope` (twice at most).
//! Exits 0 when the request went through with a token.

use serde_json::{json, Value};
use warden_gateway::upstream::link;

/// The metadata document URL the suite expects a CIMD client to use.
const CIMD: &str = "https://conformance-test.local/client-metadata.json";
const REDIRECT: &str = "http://localhost:3000/callback";

async fn request(
    http: &reqwest::Client,
    url: &str,
    version: &str,
    method: &str,
    params: Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut params = params;
    if version == "2026-07-28" {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {}});
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.body(body.to_string()).send().await.expect("the MCP server answers")
}

fn challenge_of(r: &reqwest::Response) -> Option<link::Challenge> {
    link::challenge(r.headers().get("www-authenticate")?.to_str().ok()?)
}

/// The client's state across requests: its token, what it was granted, who it is where.
#[derive(Default)]
struct Session {
    token: Option<String>,
    granted: std::collections::BTreeSet<String>,
    identity: Option<(String, link::Identity)>,
}

impl Session {
    /// Authorize after `challenge`: discovery (again: the server may have moved), the identity
    /// at that server (registered anew at a new one), the scopes asked for with those granted
    /// before (step-up), the code, the token.
    async fn authorize(
        &mut self,
        http: &reqwest::Client,
        outbound: &link::Outbound,
        url: &str,
        challenge: &link::Challenge,
        preregistered: &Option<(String, Option<String>)>,
    ) -> Result<(), String> {
        let d = link::discover(outbound, url, challenge).await?;
        let id = match self.identity.take() {
            Some((issuer, id)) if issuer == d.issuer => id,
            _ => {
                self.granted.clear();
                link::identify(outbound, &d, REDIRECT, preregistered.clone(), Some(CIMD)).await?
            }
        };
        let mut scopes = self.granted.clone();
        scopes.extend(link::scope_for(&d, challenge).iter().flat_map(|s| s.split_whitespace().map(String::from)));
        let scope = (!scopes.is_empty()).then(|| scopes.iter().cloned().collect::<Vec<_>>().join(" "));
        let (to, pending) = link::authorization_url(&d, &id, REDIRECT, scope.as_deref())?;
        let answer = http.get(&to).send().await.map_err(|e| format!("authorization: {e}"))?;
        let location = answer.headers().get("location").and_then(|l| l.to_str().ok()).ok_or("no redirect")?;
        let query: Vec<(String, String)> =
            reqwest::Url::parse(location).map_err(|e| e.to_string())?.query_pairs().into_owned().collect();
        let code = link::code_from(&d, &pending, &query)?;
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", pending.redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let tokens = link::token(outbound, &d, &id, &grant).await?;
        self.granted = scopes;
        self.token = Some(tokens.access_token);
        self.identity = Some((d.issuer.clone(), id));
        Ok(())
    }
}

async fn run(url: &str) -> Result<(), String> {
    let outbound = link::Outbound::open()?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").unwrap_or_else(|_| "2025-11-25".into());
    let context: Value =
        std::env::var("MCP_CONFORMANCE_CONTEXT").ok().and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
    let preregistered = context
        .get("client_id")
        .and_then(Value::as_str)
        .map(|id| (id.to_string(), context.get("client_secret").and_then(Value::as_str).map(String::from)));
    let first = if version == "2026-07-28" { "server/discover" } else { "initialize" };
    let init = json!({"protocolVersion": version, "capabilities": {},
                      "clientInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")}});
    let mut session = Session::default();
    // What a client does: start, list the tools, call one; authorizing (and stepping up) as
    // each answer asks, at most three times per request.
    let mut tool = None;
    for step in 0..3 {
        let (method, params) = match step {
            0 => (first, if first == "initialize" { init.clone() } else { json!({}) }),
            1 => ("tools/list", json!({})),
            _ => ("tools/call", json!({"name": tool.clone().unwrap_or_else(|| "test".to_string()), "arguments": {}})),
        };
        let mut tries = 0;
        loop {
            let r = request(&http, url, &version, method, params.clone(), session.token.as_deref()).await;
            let status = r.status().as_u16();
            if (200..300).contains(&status) {
                if method == "tools/list" {
                    let v: Value = r.json().await.unwrap_or_default();
                    tool = v.pointer("/result/tools/0/name").and_then(Value::as_str).map(String::from);
                }
                break;
            }
            let challenge = challenge_of(&r).unwrap_or_default();
            let retry = status == 401 || (status == 403 && challenge.error.as_deref() == Some("insufficient_scope"));
            if !retry {
                // Not an authorization matter (a method this server does not serve): done.
                break;
            }
            tries += 1;
            if tries > 3 {
                return Err(format!("{method}: still refused after authorizing three times"));
            }
            session.authorize(&http, &outbound, url, &challenge, &preregistered).await?;
        }
    }
    session.token.map(drop).ok_or_else(|| "never authorized".to_string())
}

#[tokio::main]
async fn main() {
    let url = std::env::args().next_back().expect("the MCP server URL");
    match run(&url).await {
        Ok(()) => println!("authorized"),
        Err(e) => {
            eprintln!("warden-oauth-client: {e}");
            std::process::exit(1);
        }
    }
}
