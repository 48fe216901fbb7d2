//! Stage 9, record: the gateway's side of the audit trail. Builds [`Event`]s from what the
//! pipeline, the transport, the admin API and the registry know, applies the argument policy,
//! feeds the metrics, and hands the event to the recorder (warden-audit).
//!
//! Defends against: an operation leaving no trace (every request waits for its record by
//! default, and a full queue refuses requests rather than losing records), secrets and PII in
//! the trail (arguments are redacted by default: known secret and PII patterns, values under
//! secret-looking keys, long strings cut; error texts are never recorded, only reason labels).
//! Does not defend against: secrets the detectors do not recognise in `full` mode, or an
//! attacker with write access to the log and the signing key.

use crate::config::{Acknowledge, AuditArguments, Config};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use warden_audit::{Event, OnFull, Recorder, Settings};
use warden_policy::redact::{Class, Redactor};
use warden_policy::Principal;

pub struct Audit {
    rec: Option<Recorder>,
    /// Authentication failures waiting to be recorded as one record per address and window.
    failures: parking_lot::Mutex<crate::failures::Failures>,
    /// Each forward destination's name and spool.
    forwards: Vec<(String, Arc<warden_audit::spool::Spool>)>,
    arguments: AuditArguments,
    redactor: Redactor,
    ack: Acknowledge,
    pub metrics: Metrics,
    /// What `warden check` and the startup log say about the trail.
    pub describe: String,
    /// A file trail's disk, under `[audit] min_free_mb` or not.
    disk: Option<Arc<crate::audit_disk::DiskWatch>>,
}

/// What `warden check` says of a file trail's rotation, retention and disk watermark.
pub fn lifecycle(a: &crate::config::AuditConfig, store: &warden_audit::Store) -> String {
    let warden_audit::Store::File(path) = store else {
        return match a.pg_retention() {
            Ok(Some(p)) => {
                let mut s = String::from("; monthly partitions dropped");
                if let Some(age) = p.keep_age {
                    s.push_str(&format!(" {} after their month ended", humantime::format_duration(age)));
                }
                if let Some(b) = p.keep_bytes {
                    s.push_str(&format!(", oldest first while over {} MiB", b >> 20));
                }
                s
            }
            _ => "; monthly partitions, all kept (see [audit.retention])".to_string(),
        };
    };
    let mut out = match a.segments(path) {
        Ok(Some(p)) => {
            let mut s = String::from("; rotated");
            if let Some(b) = p.rotation.max_bytes {
                s.push_str(&format!(" at {} MiB", b >> 20));
            }
            if let Some(age) = p.rotation.max_age {
                s.push_str(&format!(" every {}", humantime::format_duration(age)));
            }
            if let Some(age) = p.retention.keep_age {
                s.push_str(&format!(", segments kept {}", humantime::format_duration(age)));
            }
            if let Some(b) = p.retention.keep_bytes {
                s.push_str(&format!(", the trail kept under {} MiB", b >> 20));
            }
            if let Some(d) = &p.retention.archive {
                s.push_str(&format!(", old segments archived to {}", d.display()));
            }
            s
        }
        _ => "; not rotated (grows until the disk is full: see [audit.rotate])".to_string(),
    };
    if a.min_free_mb > 0 {
        out.push_str(&format!("; disk reported low under {} MiB free", a.min_free_mb));
    }
    out
}

/// How often a PostgreSQL trail's retention is applied (by whichever replica gets to it).
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How long a request waits for its record before failing closed.
const STORE_WAIT: Duration = Duration::from_secs(10);
/// Longest string kept in recorded arguments.
const MAX_ARG_STRING: usize = 1024;
/// Longest identifier kept in a record (request id, names, target, subject, …): a client's
/// 3 MiB JSON-RPC id must not make a 3 MiB record.
const MAX_FIELD: usize = 512;

/// Cut `s` to at most `max` bytes (on a character boundary), saying how much was left out.
fn cap(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = s.len() - cut;
    s.truncate(cut);
    s.push_str(&format!("[… {more} bytes not recorded]"));
}

/// Every client- or upstream-chosen identifier of `e`, capped.
fn cap_fields(e: &mut Event) {
    for f in [
        &mut e.request_id,
        &mut e.name,
        &mut e.target,
        &mut e.subject,
        &mut e.tenant,
        &mut e.client_id,
        &mut e.server,
        &mut e.method,
        &mut e.session,
        &mut e.detail,
        &mut e.client_addr,
        &mut e.rule,
    ]
    .into_iter()
    .flatten()
    {
        cap(f, MAX_FIELD);
    }
}

/// Argument keys whose values are never recorded, whatever they look like.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "credential",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl Audit {
    /// No trail (tests, `[audit] enabled = false`); metrics still count.
    pub fn disabled() -> Arc<Audit> {
        Arc::new(Audit {
            rec: None,
            failures: Default::default(),
            forwards: Vec::new(),
            arguments: AuditArguments::None,
            redactor: Redactor::new(&[]),
            ack: Acknowledge::Queued,
            metrics: Metrics::new(),
            describe: "audit: off".into(),
            disk: None,
        })
    }

    /// `(free, watermark)` in bytes while a file trail's disk is under `[audit] min_free_mb`.
    pub fn disk_low(&self) -> Option<(u64, u64)> {
        self.disk.as_ref().and_then(|d| d.low())
    }

    pub fn open(cfg: &Config) -> Result<Arc<Audit>, String> {
        let a = &cfg.audit;
        if !a.enabled {
            return Ok(Audit::disabled());
        }
        let key = warden_audit::signing::SigningKey::load_or_generate(&a.signing_key)
            .map_err(|e| format!("audit.signing_key: {e}"))?;
        let public = key.public_key();
        if let Some(pin) = a.public_key.as_deref().filter(|p| p.trim() != public) {
            return Err(format!(
                "audit.signing_key {}: its public half {public} is not the pinned audit.public_key {pin}: \
                 the key file was replaced (or the pin is stale); refusing to sign a trail with it",
                a.signing_key.display()
            ));
        }
        let store = a.store()?;
        let mut spools = Vec::new();
        for f in &a.forward {
            let path = f.spool_path(a);
            let spool = warden_audit::spool::Spool::open(&path, f.spool_max_mb << 20)
                .map_err(|e| format!("audit.forward {}: {e}", f.name))?;
            let spool = Arc::new(spool);
            crate::forward::start(f, &a.instance, spool.clone())?;
            spools.push((f.name.clone(), spool));
        }
        let sink = warden_audit::open_sink(&store, a.fsync).map_err(|e| format!("audit: {e}"))?;
        let rec = Recorder::start(
            Settings {
                chain: a.instance.clone(),
                capacity: a.queue_capacity,
                on_full: a.on_full,
                max_batch: if a.fsync == warden_audit::Fsync::Event { 1 } else { 4096 },
                group_commit: Duration::from_millis(a.group_commit_ms),
                checkpoint_every: a.checkpoint_every,
                checkpoint_interval: Duration::from_secs(a.checkpoint_secs),
                checkpoint_file: Some(a.checkpoints()),
                spools: spools.iter().map(|s| s.1.clone()).collect(),
                // A local trail acknowledges from its journal (beside it) unless the answer must
                // wait for an fsync; PostgreSQL once committed.
                journal: match &store {
                    warden_audit::Store::File(p) => Some(journal_base(p, &a.instance)),
                    warden_audit::Store::Postgres { .. } => None,
                },
                journal_acks: a.acknowledge == Acknowledge::Stored && a.fsync == warden_audit::Fsync::Never,
                segments: match &store {
                    warden_audit::Store::File(p) => a.segments(p)?,
                    warden_audit::Store::Postgres { .. } => None,
                },
            },
            sink,
            Some(key),
        )
        .map_err(|e| format!("audit {}: {e}", store.describe()))?;
        if let (Some(pg), Some(policy)) = (store.pg(), a.pg_retention()?) {
            // Its own copy of the key: it signs the marks of where each removal stopped.
            let key = warden_audit::signing::SigningKey::load(&a.signing_key)
                .map_err(|e| format!("audit.signing_key: {e}"))?;
            warden_audit::pg_retain::Pruner {
                config: pg?,
                chain: a.instance.clone(),
                key,
                recorder: rec.clone(),
                policy,
            }
            .start(RETENTION_EVERY);
        }
        let metrics = Metrics::new();
        let disk = match &store {
            warden_audit::Store::File(p) if a.min_free_mb > 0 => {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let gauges = (metrics.audit_disk_free.clone(), metrics.audit_disk_low.clone());
                let (min, r) = (a.min_free_mb << 20, rec.clone());
                Some(crate::audit_disk::DiskWatch::start(dir.to_path_buf(), min, gauges, move |low, free| {
                    let mb = free >> 20;
                    if low {
                        tracing::warn!(
                            free_mb = mb,
                            min_free_mb = min >> 20,
                            "audit: the trail's disk is low (readyz: not ready); free space before it fills"
                        );
                    } else {
                        tracing::info!(free_mb = mb, "audit: the trail's disk has room again");
                    }
                    let mut e = Event::new("audit", if low { "error" } else { "success" });
                    e.detail = Some(if low { "disk_low" } else { "disk_ok" }.into());
                    e.count = Some(mb);
                    let _ = r.record(e);
                }))
            }
            _ => None,
        };
        let audit = Arc::new(Audit {
            rec: Some(rec),
            failures: Default::default(),
            forwards: spools,
            arguments: a.arguments,
            redactor: Redactor::new(&[Class::SECRETS, Class::PII].concat()),
            ack: a.acknowledge,
            metrics,
            disk,
            describe: format!(
                "audit: {} (chain {}, fsync {}, arguments {}, on_full {}); checkpoints signed by {public}",
                store.describe(),
                a.instance,
                format!("{:?}", a.fsync).to_lowercase(),
                format!("{:?}", a.arguments).to_lowercase(),
                format!("{:?}", a.on_full).to_lowercase(),
            ) + &a
                .forward
                .iter()
                .map(|f| format!("; forwarded to {} ({})", f.name, format!("{:?}", f.format).to_lowercase()))
                .collect::<String>()
                + &lifecycle(a, &store),
        });
        // Aggregated authentication failures are recorded when their window ends.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&audit);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let Some(a) = weak.upgrade() else { return };
                    a.flush_failures(false);
                }
            });
        }
        Ok(audit)
    }

    /// Whether a request may start: false while the queue is full and full means refuse.
    pub fn admits(&self) -> bool {
        match &self.rec {
            Some(r) if r.on_full() == OnFull::Reject => !r.full(),
            _ => true,
        }
    }

    /// Who: subject, tenant, client id.
    pub fn principal(e: &mut Event, p: &Principal) {
        e.subject = Some(p.subject.clone());
        e.tenant.clone_from(&p.tenant);
        e.client_id.clone_from(&p.client_id);
    }

    /// The arguments: always their digest, and the value per the argument policy.
    pub fn arguments(&self, e: &mut Event, args: &Value) {
        e.args_digest = Some(warden_audit::event::digest(args));
        e.args = match self.arguments {
            AuditArguments::None => None,
            AuditArguments::Full => Some(args.clone()),
            AuditArguments::Redacted => {
                let mut v = args.clone();
                self.redact(&mut v, 0);
                Some(v)
            }
        };
    }

    fn redact(&self, v: &mut Value, depth: usize) {
        if depth > 32 {
            *v = Value::String("[deeper values not recorded]".into());
            return;
        }
        match v {
            Value::String(s) => {
                let mut found = Vec::new();
                if let std::borrow::Cow::Owned(r) = self.redactor.redact(s, &mut found) {
                    *s = r;
                }
                cap(s, MAX_ARG_STRING);
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact(x, depth + 1)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if secret_key(k) && !x.is_null() {
                        *x = Value::String("[REDACTED:secret-named argument]".into());
                    } else {
                        self.redact(x, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// Queue an event that must be accepted before what it records happens (the attempt of an
    /// upstream call): a full queue is an error unless `on_full = "drop"`. Not waited for, and
    /// queued lazily: the writer holds it back a few milliseconds for the outcome to join it in
    /// one commit.
    /// Queue an event nobody waits for; `Ok(true)` when it was queued, `Ok(false)` when the
    /// trail is off or dropped it (`on_full = "drop"`).
    pub fn accept(&self, mut e: Event) -> Result<bool, GatewayError> {
        cap_fields(&mut e);
        self.metrics.observe(&e);
        let Some(r) = &self.rec else { return Ok(false) };
        match r.record_lazy(e) {
            Ok(_) => Ok(true),
            Err(_) if r.on_full() == OnFull::Drop => Ok(false),
            Err(_) => {
                self.metrics.audit_rejected.inc();
                tracing::error!("audit queue full: an upstream call was refused before it was sent");
                Err(GatewayError::AuditUnavailable)
            }
        }
    }

    /// An authentication failure from `source`: the first of its address's window is recorded
    /// at once, the rest are counted and recorded when the window ends (`failures.rs`).
    pub fn auth_failure(&self, source: Option<std::net::IpAddr>, reason: &'static str) {
        if self.failures.lock().note(source, reason, std::time::Instant::now()) {
            self.emit(failure_event(source, reason, None));
        }
    }

    /// Record the aggregated authentication failures whose window ended (all of them with `all`).
    pub fn flush_failures(&self, all: bool) {
        let due = self.failures.lock().due(std::time::Instant::now(), all);
        for (source, reason, n) in due {
            self.emit(failure_event(source, reason, Some(n)));
        }
    }

    /// Record an event that no request waits on (auth failures, admin actions, pin changes).
    pub fn emit(&self, mut e: Event) {
        cap_fields(&mut e);
        self.metrics.observe(&e);
        if let Some(r) = &self.rec {
            if r.record(e).is_err() {
                self.metrics.audit_rejected.inc();
                tracing::error!("audit queue full: an event was not recorded");
            }
        }
    }

    /// Record a request's event and, unless `acknowledge = "queued"`, wait until it is stored.
    /// Fails closed: a full queue or a sink that does not store it in time is an error.
    pub async fn commit(&self, mut e: Event) -> Result<(), GatewayError> {
        cap_fields(&mut e);
        self.metrics.observe(&e);
        let Some(r) = &self.rec else { return Ok(()) };
        match r.record(e) {
            // On disk already (the journal): it survives Warden being killed.
            Ok(_) if self.ack == Acknowledge::Stored && r.journaled() => Ok(()),
            Ok(t) if self.ack != Acknowledge::Queued => {
                if r.stored(t, STORE_WAIT).await {
                    Ok(())
                } else {
                    tracing::error!("audit record not stored in time; request failed closed");
                    Err(GatewayError::AuditUnavailable)
                }
            }
            Ok(_) => Ok(()),
            Err(_) if r.on_full() == OnFull::Drop => Ok(()),
            Err(_) => {
                self.metrics.audit_rejected.inc();
                Err(GatewayError::AuditUnavailable)
            }
        }
    }

    /// Refresh the audit gauges (at scrape time).
    pub fn refresh_gauges(&self) {
        if let Some(r) = &self.rec {
            self.metrics.audit_queue.set(r.depth() as i64);
            self.metrics.audit_dropped.set(r.dropped() as i64);
            self.metrics.audit_written.set(r.written() as i64);
            self.metrics.audit_failing.set(r.failing() as i64);
        }
        for (name, spool) in &self.forwards {
            let labels = vec![("forward", name.clone())];
            self.metrics.forward_pending.get_or_create(&labels).set(spool.pending() as i64);
            self.metrics.forward_dropped.get_or_create(&labels).set(spool.dropped() as i64);
        }
    }

    /// Write what is queued and sign a last checkpoint.
    pub fn close(&self) {
        self.flush_failures(true);
        if let Some(r) = &self.rec {
            r.close();
        }
    }
}

/// The record of `count` authentication failures (None: one) from `source` for `reason`.
/// Where a local trail's acknowledgement journal of chain `instance` lives:
/// `<trail>.<instance>.journal.a` / `.b` (the instance's name made file-safe).
pub fn journal_base(trail: &std::path::Path, instance: &str) -> std::path::PathBuf {
    let safe: String =
        instance.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let mut p = trail.as_os_str().to_owned();
    p.push(format!(".{safe}.journal"));
    std::path::PathBuf::from(p)
}

fn failure_event(source: Option<std::net::IpAddr>, reason: &str, count: Option<u64>) -> Event {
    let mut ev = Event::new("auth_failure", "auth_denied");
    ev.decision = Some("denied".into());
    ev.detail = Some(reason.to_string());
    ev.client_addr = Some(source.map_or_else(|| "other addresses".to_string(), |a| a.to_string()));
    ev.count = count;
    ev
}
