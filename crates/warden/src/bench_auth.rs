//! `warden bench --auth`: the authentication stage in process, per request: a JWT already
//! verified (the common case: a client reusing its token), a JWT seen for the first time
//! (signature check with a cached key), an API key, and a refusal. No network.

use std::sync::Arc;
use std::time::Instant;
use warden_gateway::auth::Authenticator;
use warden_gateway::config::Config;

fn parts(token: &str) -> http::request::Parts {
    let (p, _) = http::Request::builder()
        .uri("/mcp")
        .header("host", "127.0.0.1:8931")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("static request")
        .into_parts();
    p
}

async fn per_op<F, Fut>(n: usize, mut f: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t = Instant::now();
    for i in 0..n {
        f(i).await;
    }
    t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

pub async fn run(n: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("warden-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (key, entry) = warden_gateway::auth::apikey::generate("svc", &["mcp".into()], None, None);
    let text = format!(
        "[[upstream]]\nname = \"x\"\ntransport = \"stdio\"\ncommand = \"true\"\n[auth]\nrequired_scopes = [\"mcp\"]\n\
         [auth.builtin]\nkey_file = {:?}\nusers_file = {:?}\n{entry}",
        dir.join("key.pk8").display().to_string(),
        dir.join("users.toml").display().to_string()
    );
    let cfg = Config::parse(&text, "bench").map_err(|e| anyhow::anyhow!(e.0))?;
    let auth: Arc<Authenticator> =
        Authenticator::new(cfg.auth.as_ref().expect("auth"), &cfg, reqwest::Client::new(), None)
            .map_err(|e| anyhow::anyhow!(e))?;
    let resource = "http://127.0.0.1:8931/mcp";
    let builtin = auth.builtin.clone().expect("builtin");
    let tokens: Vec<String> =
        (0..n).map(|i| builtin.mint(&format!("user{i}"), &["mcp".into()], "bench", resource, 900)).collect();
    let token_parts: Vec<_> = tokens.iter().map(|t| parts(t)).collect();
    // First sight of each token: signature verified with the cached key.
    let first = per_op(n, |i| {
        let (a, p) = (auth.clone(), &token_parts[i]);
        async move {
            a.authenticate(p, resource).await.expect("valid token");
        }
    })
    .await;
    // The same token again: the verified-token cache.
    let again = per_op(n, |i| {
        let (a, p) = (auth.clone(), &token_parts[i % 16]);
        async move {
            a.authenticate(p, resource).await.expect("valid token");
        }
    })
    .await;
    let kp = parts(&key);
    let apikey = per_op(n, |_| {
        let (a, p) = (auth.clone(), &kp);
        async move {
            a.authenticate(p, resource).await.expect("valid key");
        }
    })
    .await;
    let bad = parts("not-a-token");
    let refused = per_op(n, |_| {
        let (a, p) = (auth.clone(), &bad);
        async move {
            let e = a.authenticate(p, resource).await.expect_err("refused");
            std::hint::black_box(a.reject(&e, resource));
        }
    })
    .await;
    println!("authentication, in process, {n} requests each (µs per request):");
    println!("  JWT (EdDSA), first sight (signature check, cached key) {first:>8.2}");
    println!("  JWT, seen before (verified-token cache)                {again:>8.2}");
    println!("  API key (SHA-256 + constant-time compare)             {apikey:>8.2}");
    println!("  refusal (401 with challenge)                          {refused:>8.2}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
