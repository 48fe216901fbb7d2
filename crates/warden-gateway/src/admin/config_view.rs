//! `GET /admin/config`: the config the current generation runs (defaults applied, as reloaded),
//! shown with every secret masked, and what `warden check` finds in it. Operators only.
//!
//! The config is written out through its `Serialize` (`config/mask.rs`): secret references as
//! where they point, never resolved; API key hashes, literal `env` values, plain header values
//! and the password, query and fragment of URLs masked. Then every string of the answer goes
//! through the secret redactor (cloud keys, tokens, JWTs, private keys, passwords in connection
//! strings), for a secret pasted where the config does not expect one (`args`, a rule's `when`).
//!
//! The check (`crate::check`) reads every secret (to report which references fail, never a
//! value) and runs the sandbox helper once per sandboxed upstream: it runs on the blocking pool,
//! one at a time (`flight.rs`), its result kept 30 seconds for the same generation, and a
//! request waits for it at most 20 seconds (then an error line says it is still running).
//!
//! Defends against: the view leaking a secret or a secret's hash, a reload of the page running
//! a process per request. Does not defend against: a secret with no recognisable shape pasted
//! into a field that is not for secrets (documented as such), or a secret's file path or
//! variable name being sensitive in itself (they are shown: they say where the secret is).

use super::caller::{operator, Presented};
use super::flight::{Got, Want};
use super::{reply, AdminState};
use crate::check::{self, CheckLine};
use crate::config::Config;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden_policy::redact::{Class, Redactor};

/// How long a request waits for the check, and how long its result is reused.
const CHECK_WAIT: Duration = Duration::from_secs(20);
const CHECK_MAX_AGE: Duration = Duration::from_secs(30);

/// The config as JSON, secrets masked (see the module doc). `Err`: it cannot be written out (a
/// path that is not UTF-8).
pub fn render(cfg: &Config) -> Result<Value, String> {
    let mut v = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    redact_strings(&mut v);
    Ok(v)
}

/// Every string in `v` (not the keys: names of variables, headers, tables) through the secret
/// redactor. Iterative: a schema table may nest deep.
fn redact_strings(v: &mut Value) {
    let redactor = Redactor::new(Class::SECRETS);
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                let mut found = Vec::new();
                if let std::borrow::Cow::Owned(r) = redactor.redact(s, &mut found) {
                    *s = r;
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(o) => stack.extend(o.values_mut()),
            _ => {}
        }
    }
}

pub async fn config(State(s): State<Arc<AdminState>>, p: Presented) -> Response<Body> {
    if let Err(r) = operator(&s, &p).await {
        return r;
    }
    let current = s.current.load_full();
    let cfg = current.config.clone();
    let shown = match render(&cfg) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "admin: the config could not be shown");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "the config could not be shown; see the log"}),
            );
        }
    };
    let origin = s.config_origin.clone();
    let helper = crate::upstream::stdio::sandbox_helper()
        .ok_or_else(|| "the sandbox helper is not available (Warden was not started as the warden binary)".to_string());
    let want = Want { key: current.generation, max_age: CHECK_MAX_AGE, wait: CHECK_WAIT };
    let got = s.jobs.check.get(want, move || check::run(&cfg, &origin, helper)).await;
    let failed = |why: &str| json!({"ok": false, "lines": [CheckLine::error(why)]});
    let mut checked = match got {
        Got::Ready { done, cached } => {
            json!({"ok": check::passed(&done.value), "generation": done.key, "checked_at": done.at, "cached": cached,
                   "lines": done.value})
        }
        Got::Running => failed("the check did not finish within 20 s (it is still running: ask again shortly)"),
        Got::Failed => failed("the check failed; see the log"),
    };
    redact_strings(&mut checked);
    reply(StatusCode::OK, json!({"generation": current.generation, "config": shown, "check": checked}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config carrying an API key's hash, secret references (a file and an environment
    /// variable, as an upstream's `secret_env` and `secret_headers` and the admin token),
    /// literal `env` values, plain telemetry headers, a URL with a password and a query, and a
    /// cloud key pasted into `args`: none of that secret material is in the view; every secret
    /// reference is shown as where it points.
    #[test]
    fn the_config_shown_holds_no_secret() {
        let dir = std::env::temp_dir().join(format!("warden-config-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "file-secret-9f4c1e7a2b-and-long-enough-for-an-admin\n").unwrap();
        std::env::set_var("WARDEN_VIEW_TEST_SECRET", "env-secret-5d2a8c3f71");
        let (api_key, entry) = crate::auth::apikey::generate("svc", &["mcp".into()], None, None);
        let f = file.display().to_string();
        let text = format!(
            r#"
[[upstream]]
name = "local"
transport = "stdio"
command = "/bin/true"
args = ["--key", "AKIAIOSFODNN7EXAMPLE"]
env = {{ PLAIN = "literal-env-value-31337" }}
secret_env = {{ TOKEN = {{ env = "WARDEN_VIEW_TEST_SECRET" }} }}

[[upstream]]
name = "remote"
transport = "http"
url = "https://ops:url-password-4242@remote.example/mcp?k=query-secret-8080"
secret_headers = {{ Authorization = {{ file = {f:?}, prefix = "Bearer " }}, X-Other = {{ env = "WARDEN_VIEW_TEST_SECRET", prefix = "k=abc:" }} }}

[auth]
{entry}
[admin]
token = {{ file = {f:?} }}

[telemetry]
traces_url = "https://collector.example/v1/traces"
headers = {{ x-api-key = "telemetry-header-secret-777" }}
"#
        );
        let path = dir.join("w.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = Config::load(&path).unwrap();
        let shown = render(&cfg).unwrap();
        let out = shown.to_string();

        // Every secret reference, resolved here as Warden would: no value, with or without its
        // prefix, is in the view.
        let mut c = cfg.clone();
        let secrets = c.secrets_mut();
        assert_eq!(secrets.len(), 4, "{:?}", secrets.iter().map(|s| &s.0).collect::<Vec<_>>());
        for (key, s) in secrets {
            let value = s.resolve().unwrap();
            let bare = value.strip_prefix(s.prefix.as_str()).unwrap();
            assert!(!out.contains(bare.trim()), "{key}: its value is shown: {out}");
        }
        let hash = cfg.auth.as_ref().unwrap().api_keys[0].hash.clone();
        let hex = hash.strip_prefix("sha256:").unwrap();
        for secret in [
            hex,
            &api_key,
            "literal-env-value-31337",
            "url-password-4242",
            "query-secret-8080",
            "telemetry-header-secret-777",
            "AKIAIOSFODNN7EXAMPLE",
            "k=abc:",
        ] {
            assert!(!out.contains(secret), "{secret} is shown: {out}");
        }

        // What is shown: where each secret is, the names of variables and headers.
        let up = &shown["upstream"];
        assert_eq!(up[0]["secret_env"]["TOKEN"], json!({"env": "WARDEN_VIEW_TEST_SECRET"}));
        assert_eq!(up[0]["env"], json!({"PLAIN": "***"}));
        assert_eq!(up[1]["secret_headers"]["Authorization"], json!({"file": f, "prefix": "Bearer "}));
        assert_eq!(up[1]["secret_headers"]["X-Other"], json!({"env": "WARDEN_VIEW_TEST_SECRET", "prefix": "***"}));
        // (the redactor then takes the masked password for one: either way, not the password)
        let url = up[1]["url"].as_str().unwrap();
        assert!(url.starts_with("https://ops:") && url.ends_with("@remote.example/mcp?***"), "{url}");
        assert_eq!(shown["auth"]["api_key"][0]["hash"], "***");
        assert_eq!(shown["auth"]["api_key"][0]["subject"], "svc");
        assert_eq!(shown["admin"]["token"], json!({"file": f}));
        assert_eq!(shown["telemetry"]["headers"], json!({"x-api-key": "***"}));
        // Defaults are applied.
        assert_eq!(shown["listen"]["addr"], "127.0.0.1:8931");
        assert_eq!(shown["audit"]["checkpoint_every"], 10_000);
        std::fs::remove_dir_all(dir).ok();
    }
}
