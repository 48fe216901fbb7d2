//! Config reload without dropping calls: `SIGHUP` and `POST /admin/reload` re-read the config
//! file, validate it as a whole and build the next generation of what calls use (rules, limits,
//! content settings, guards, upstreams added, removed or changed); an invalid file, or one that
//! changes what only a restart applies, is refused and the running generation keeps serving.
//! Every attempt is logged, counted (`warden_config_reloads_total{result}`) and recorded in the
//! audit trail (`kind = "config_reload"`).
//!
//! How a generation takes over: new sessions and 2026 requests use it at once. A 2025 session of
//! an older generation is retired at its next request and taken up again (its sealed id,
//! `server/http/sessions.rs`) under the new one; the retired session finishes its calls in flight
//! under the config they started with, then closes its upstream connections. What lasts across
//! generations: the audit trail, the store (limit counters, kill switches, approvals), the
//! sealing key, pins, the HTTP client and the trace exporter.
//!
//! Defends against: a typo taking the gateway down (the old config keeps serving), a half-applied
//! config (a generation is built whole, then swapped in one step), calls cut by a reload.
//! Does not defend against: sections that need a restart (`[listen]`, `[auth]`, `[admin]`,
//! `[store]`, `[audit]`, `[cluster]`, `[telemetry]`, `[approval]`, and the pin and scan settings
//! of `[content]`): a change to one — a secret they reference rotated included — is refused with
//! its name, until the restart. A retired session's subscriptions and open streams end with
//! it (the client's GET stream closes; it reconnects to the new session).

use crate::approval::Approvals;
use crate::config::Config;
use crate::control::Control;
use crate::killswitch::KillSwitches;
use crate::namespace::Namespaces;
use crate::policy::Policy;
use crate::relay::Shared;
use crate::store::Store;
use crate::upstream::Spec;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// What lasts across generations.
#[derive(Clone)]
pub struct Lasting {
    pub http: reqwest::Client,
    pub audit: Arc<crate::audit::Audit>,
    pub store: Arc<dyn Store>,
    pub kills: Arc<KillSwitches>,
    pub approvals: Arc<Approvals>,
    pub registry: Arc<crate::registry::Registry>,
    pub traces: Option<Arc<crate::trace::Exporter>>,
    pub sealer: Arc<crate::seal::Sealer>,
    /// Users' linked accounts (`mode = "user"`) and the credential vault.
    pub links: Arc<crate::upstream::user::Links>,
}

/// One generation of what calls use, from `cfg`.
pub fn build(cfg: &Config, l: &Lasting, generation: u64) -> Result<Shared, String> {
    // Before any key is read: no sandboxed upstream may reach one.
    let mut unsandboxed = Vec::new();
    let exposed = crate::upstream::exposure::exposed_secrets(cfg, &mut unsandboxed);
    for w in &unsandboxed {
        tracing::warn!("{w}");
    }
    if let Some(first) = exposed.first() {
        let more = if exposed.len() > 1 { format!(" (and {} more)", exposed.len() - 1) } else { String::new() };
        return Err(format!("{first}{more}"));
    }
    let user_mode =
        |u: &&crate::config::Upstream| u.oauth.as_ref().is_some_and(|o| o.mode == crate::config::OAuthMode::User);
    l.links.set_upstreams(cfg.upstreams.iter().filter(user_mode).map(|u| u.name.clone()).collect());
    let specs =
        cfg.upstreams.iter().map(|u| Spec::from_config(u, &cfg.content, &l.links)).collect::<Result<Vec<_>, _>>()?;
    let ns =
        Namespaces::new(&cfg.federation.separator, cfg.upstreams.iter().map(|u| u.namespace().to_string()).collect());
    let policy = Arc::new(Policy::new(cfg, l.kills.clone(), l.store.clone())?);
    if policy.rules().is_empty() {
        tracing::warn!("no [[rule]] allows anything: every tool, resource and prompt is hidden and refused");
    }
    Ok(Shared {
        known: specs.iter().map(|_| Mutex::new(None)).collect(),
        stateless: specs.iter().map(|_| Default::default()).collect(),
        specs,
        extensions: crate::extensions::Extensions::new(&cfg.federation.extensions),
        ns,
        http: l.http.clone(),
        policy,
        approvals: l.approvals.clone(),
        content: Arc::new(crate::content::Content::new(cfg)?),
        registry: l.registry.clone(),
        audit: l.audit.clone(),
        traces: l.traces.clone(),
        tasks: crate::task_handle::TaskHandles::new(l.sealer.clone()),
        generation,
        config: Arc::new(cfg.clone()),
    })
}

/// The sections (and `[content]` settings) a reload may not change, one line each, as they were
/// read: secret locations left out (a line moved is not a change) and, for the secrets of these
/// sections, a digest of what they resolve to (a secret rotated behind the same reference is a
/// change).
fn restart_only(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut c = cfg.clone();
    let mut secrets: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
    for (key, s) in c.secrets_mut() {
        s.forget_location();
        let section = RESTART_ONLY.iter().find(|n| key.starts_with(*n));
        if let Some(section) = section {
            let value = s.resolve().unwrap_or_else(|e| format!("unreadable: {e}"));
            secrets.entry(section).or_default().push(crate::digest::hex(&crate::digest::sha256(value.as_bytes())));
        }
    }
    let k = &c.content;
    let pins = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        k.pinning, k.pin_file, k.pin_public_key, k.pin_resources, k.scan, k.max_definitions
    );
    let sections = [
        format!("{:?}", c.listen),
        format!("{:?}", c.auth),
        format!("{:?}", c.admin),
        format!("{:?}", c.store),
        format!("{:?}", c.audit),
        format!("{:?}", c.cluster),
        format!("{:?}", c.telemetry),
        format!("{:?}", c.approval),
        pins,
    ];
    RESTART_ONLY.iter().zip(sections).map(|(n, text)| (*n, format!("{text} {:?}", secrets.get(n)))).collect()
}

/// What only a restart applies, by the name an error gives it.
const RESTART_ONLY: [&str; 9] = [
    "listen",
    "auth",
    "admin",
    "store",
    "audit",
    "cluster",
    "telemetry",
    "approval",
    "content: pinning, pin_file, pin_public_key, pin_resources, scan, max_definitions",
];

/// The names of what differs between `a` and `b` among what only a restart applies.
fn restart_changes(a: &Config, b: &Config) -> Vec<&'static str> {
    restart_only(a).into_iter().zip(restart_only(b)).filter(|(x, y)| x.1 != y.1).map(|(x, _)| x.0).collect()
}

/// What a reload did.
#[derive(Debug, serde::Serialize)]
pub struct Applied {
    pub generation: u64,
    pub upstreams: Vec<String>,
    pub rules: usize,
}

/// Re-reads the config file and swaps in the next generation.
pub struct Reloader {
    path: PathBuf,
    running: Mutex<Config>,
    lasting: Lasting,
    current: Arc<ArcSwap<Shared>>,
    control: Arc<ArcSwap<Control>>,
    auth: Option<Arc<crate::auth::Authenticator>>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        running: Config,
        lasting: Lasting,
        current: Arc<ArcSwap<Shared>>,
        control: Arc<ArcSwap<Control>>,
        auth: Option<Arc<crate::auth::Authenticator>>,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            path,
            running: Mutex::new(running),
            lasting,
            current,
            control,
            auth,
            busy: Default::default(),
        })
    }

    /// Read, validate and apply the config file; `by` says who asked (for the audit record).
    pub async fn reload(&self, by: &str) -> Result<Applied, String> {
        let _one = self.busy.lock().await;
        let r = self.apply().await;
        let mut e = warden_audit::Event::new("config_reload", if r.is_ok() { "success" } else { "refused" });
        e.subject = Some(by.to_string());
        match &r {
            Ok(a) => {
                e.detail = Some(format!("generation {}", a.generation));
                tracing::info!(generation = a.generation, upstreams = ?a.upstreams, rules = a.rules, by, "config reloaded");
            }
            Err(why) => {
                e.detail = Some(why.chars().take(500).collect());
                tracing::error!(error = %why, by, "config reload refused; the running config keeps serving");
            }
        }
        // Waited for (as a request's record is): a reload is not something to lose from the trail.
        if let Err(err) = self.lasting.audit.commit(e).await {
            tracing::error!(error = %err, "the config reload's audit record was not stored");
        }
        r
    }

    async fn apply(&self) -> Result<Applied, String> {
        let path = self.path.clone();
        let mut cfg = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.0)?;
        {
            let running = self.running.lock();
            // `--listen` may have overridden the file's address: a restart applies either.
            cfg.listen.addr = running.listen.addr;
            let changed = restart_changes(&running, &cfg);
            if !changed.is_empty() {
                return Err(format!(
                    "{}: changes to these sections apply only at a restart; nothing was changed",
                    changed.iter().map(|s| format!("[{s}]")).collect::<Vec<_>>().join("; ")
                ));
            }
        }
        let generation = self.current.load().generation + 1;
        let next = Arc::new(build(&cfg, &self.lasting, generation)?);
        // Definitions are compiled with the `[content]` argument settings: vetted again.
        self.lasting.registry.forget_vetted();
        let control = Control::new(next.clone(), self.auth.clone());
        control.start();
        self.current.store(next.clone());
        let old = self.control.swap(control);
        tokio::spawn(async move { old.close().await });
        let applied = Applied {
            generation,
            upstreams: next.specs.iter().map(|s| s.name.clone()).collect(),
            rules: next.policy.rules().rules().len(),
        };
        *self.running.lock() = cfg;
        Ok(applied)
    }

    /// Reload on every `SIGHUP` while the returned task lives.
    pub fn on_sighup(self: &Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = me.reload("SIGHUP").await;
            }
        }))
    }

    /// Reload whenever the config file's content changes (looked at every `every`): for a
    /// config mounted from a Kubernetes ConfigMap, which the kubelet replaces in place. A content
    /// that was refused is not tried again until it changes again.
    pub fn on_file_change(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let digest = |path: PathBuf| async move {
            tokio::task::spawn_blocking(move || std::fs::read(&path).ok().map(|b| crate::digest::sha256(&b)))
                .await
                .ok()
                .flatten()
        };
        tokio::spawn(async move {
            let mut seen = digest(me.path.clone()).await;
            loop {
                tokio::time::sleep(every).await;
                let now = digest(me.path.clone()).await;
                // An unreadable file (mid-replacement, or gone) is not a change.
                if now.is_some() && now != seen {
                    seen = now;
                    let _ = me.reload("config file changed").await;
                }
            }
        })
    }
}
