//! `[audit]`, `[[audit.forward]]` and `[telemetry]`: the record of every operation, and where it goes.

use super::*;

/// `[audit]`: the record of every operation (initialize, listings, calls, reads, prompts,
/// approvals, kill switches, pins, admin actions, authentication failures), hash-chained and
/// signed at checkpoints; `warden audit verify|query|tail` read it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Keep the audit trail. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The log: a SQLite database (WAL), or a JSONL file when the name ends in `.jsonl`.
    /// Relative to the config file. Default `warden-audit.db`.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// A PostgreSQL database instead of `path`, `postgres://user@host:port/dbname`, shared by
    /// several Wardens (each writes its own chain, `instance`; table `audit_events`, created
    /// when missing). TLS as the URL's `sslmode` and `sslrootcert` say, as libpq's (default
    /// `prefer`; across a network, `verify-full` with `sslrootcert`).
    #[serde(serialize_with = "mask::opt_url")]
    pub url: Option<String>,
    /// PostgreSQL: the password, kept out of the URL.
    pub password: Option<SecretRef>,
    /// Where signed checkpoints are also appended, outside the log (the anchor that reveals a
    /// truncated log). Relative to the config file. Default `<path>.checkpoints`.
    pub checkpoint_file: Option<PathBuf>,
    /// When writes are forced to disk: `"never"` (default: a record survives Warden being
    /// killed once written, not a power cut), `"batch"` (fsync per group commit) or `"event"`.
    #[serde(default)]
    pub fsync: warden_audit::Fsync,
    /// Milliseconds the writer waits for more events before writing a batch (group commit
    /// window). Default 0: a batch is whatever queued while the last one was written. At most 100.
    #[serde(default)]
    pub group_commit_ms: u64,
    /// Events waiting for the writer, at most. Default 65536.
    #[serde(default = "default_audit_queue")]
    pub queue_capacity: usize,
    /// With the queue full: `"reject"` (default: requests fail with 503 until it drains) or
    /// `"drop"` (the event is dropped and counted in metrics and checkpoints).
    #[serde(default)]
    pub on_full: warden_audit::OnFull,
    /// When a request is answered: `"stored"` (default: once its record is on disk, so every
    /// answered call has a record even if Warden is killed — for a local trail with `fsync =
    /// "never"`, appended to the acknowledgement journal beside it
    /// (`<path>.<instance>.journal.a`/`.b`), which the writer moves into the trail and a
    /// restarted Warden finishes; with `fsync` `"batch"`/`"event"` or PostgreSQL, committed),
    /// `"committed"` (once the trail itself committed it) or `"queued"` (at once).
    #[serde(default)]
    pub acknowledge: Acknowledge,
    /// Arguments in records: `"redacted"` (default: secrets, PII and values of secret-named
    /// keys replaced, long strings cut), `"none"` (only the digest) or `"full"`.
    #[serde(default)]
    pub arguments: AuditArguments,
    /// Ed25519 key (PKCS#8) that signs checkpoints; created, 0600, when absent. Relative to the
    /// config file. Default `warden-audit.key`.
    #[serde(default = "default_audit_key")]
    pub signing_key: PathBuf,
    /// The pinned public half of `signing_key` (base64; `warden audit public-key` prints it).
    /// Warden refuses to start when the key file does not match it (the file was replaced), and
    /// `warden audit verify --config` trusts only it. Unset: verification needs `--public-key`.
    /// Keep a copy off the host: whoever can edit this file can pin a key of their own.
    pub public_key: Option<String>,
    /// Sign a checkpoint after at least this many events. Default 10000.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// … or this many seconds after the last one, if there were events. Default 10.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// This instance's chain name (several Wardens may share a database). Default `warden`.
    /// `{ env = "POD_NAME" }` reads it from an environment variable when the config is loaded:
    /// each pod of a Kubernetes Deployment then writes its own chain under its own name.
    #[serde(default = "default_instance", deserialize_with = "instance_name")]
    pub instance: String,
    /// Copies of every record sent elsewhere (`[[audit.forward]]`).
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
    /// A file trail: MiB that must stay free on its disk. Under it Warden reports the disk low
    /// (`warden_audit_disk_low`, `/readyz` 503, a WARN and a record) while writes still
    /// succeed. Default 1024; 0: not watched.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// `[audit.rotate]`: a file trail (`path`) in segments.
    #[serde(default)]
    pub rotate: RotateConfig,
    /// `[audit.retention]`: which segments are removed.
    #[serde(default)]
    pub retention: RetentionConfig,
}

fn default_min_free_mb() -> u64 {
    1024
}

/// `[audit.rotate]`: when the active file (`path`) becomes a numbered segment beside it
/// (`warden-audit.000001.db`, …). Its last record is a signed checkpoint and the next file
/// continues the chain; `warden audit verify|query|tail` read every segment. Either limit (none
/// set: never). Not for PostgreSQL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateConfig {
    /// Rotate once the active file (with a SQLite write-ahead log) reaches this many MiB.
    pub max_mb: Option<u64>,
    /// … or once its first record is this old: `"1d"`, `"12h"`, `"7days"`.
    pub max_age: Option<String>,
}

/// `[audit.retention]`: segments past either limit are removed, oldest first (never the active
/// file). Each removal is first recorded and signed in the trail (an anchor: which segments, the
/// last seq and hash in them), so `warden audit verify` accepts a trail whose head was cut by the
/// policy, and reports one cut by anyone else. A file trail needs `[audit.rotate]`. A PostgreSQL
/// trail (`url`) is kept in monthly partitions: a whole month is dropped once it ended more than
/// `keep_days` ago, or while all of them are over `keep_gb` (never the current month), after the
/// same signed anchors for every Warden's chain in it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Remove segments whose last record is older than this many days (PostgreSQL: months
    /// that ended this many days ago).
    pub keep_days: Option<u64>,
    /// Remove the oldest segments (months) while the whole trail is larger than this many GiB.
    pub keep_gb: Option<f64>,
    /// Instead of removing a segment, compress it (zstd) into this directory as
    /// `<segment>.zst` (relative to the config file). `warden audit verify --archive DIR`
    /// (the config's by default) then checks the whole trail from its first record.
    pub archive_dir: Option<PathBuf>,
}

impl AuditConfig {
    /// The retention of a PostgreSQL trail: how old a month may be and how large the whole
    /// (None: keep everything). Whole monthly partitions are dropped (`pg_retain.rs`).
    pub fn pg_retention(&self) -> Result<Option<warden_audit::pg_retain::Policy>, String> {
        let k = &self.retention;
        if self.url.is_none() || (k.keep_days.is_none() && k.keep_gb.is_none() && k.archive_dir.is_none()) {
            return Ok(None);
        }
        if k.archive_dir.is_some() {
            return Err("audit.retention.archive_dir: for a file trail; a PostgreSQL trail's partitions are dropped (back the database up to keep them)".into());
        }
        if k.keep_days == Some(0) || k.keep_gb.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
            return Err("audit.retention.keep_days and keep_gb: positive".into());
        }
        Ok(Some(warden_audit::pg_retain::Policy {
            keep_age: k.keep_days.map(|d| std::time::Duration::from_secs(d * 86_400)),
            keep_bytes: k.keep_gb.map(|g| (g * (1u64 << 30) as f64) as u64),
        }))
    }

    /// The rotation and retention of a file trail at `path` (None: neither configured).
    pub fn segments(&self, path: &std::path::Path) -> Result<Option<warden_audit::segments::Policy>, String> {
        let (r, k) = (&self.rotate, &self.retention);
        if self.url.is_some() {
            if r.max_mb.is_some() || r.max_age.is_some() {
                return Err("audit.rotate: for a file trail (path); PostgreSQL is kept in monthly partitions".into());
            }
            return Ok(None);
        }
        if r.max_mb.is_none() && r.max_age.is_none() {
            if k.keep_days.is_some() || k.keep_gb.is_some() || k.archive_dir.is_some() {
                return Err(
                    "audit.retention: needs [audit.rotate] (max_mb or max_age): only segments are removed".into()
                );
            }
            return Ok(None);
        }
        let max_age = match r.max_age.as_deref() {
            Some(a) => {
                let d = humantime::parse_duration(a).map_err(|e| format!("audit.rotate.max_age {a:?}: {e}"))?;
                if d < std::time::Duration::from_secs(60) {
                    return Err("audit.rotate.max_age: at least a minute".into());
                }
                Some(d)
            }
            None => None,
        };
        if r.max_mb == Some(0) || k.keep_days == Some(0) || k.keep_gb.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
            return Err("audit.rotate.max_mb, audit.retention.keep_days and keep_gb: positive".into());
        }
        Ok(Some(warden_audit::segments::Policy {
            active: path.to_path_buf(),
            rotation: warden_audit::segments::Rotation { max_bytes: r.max_mb.map(|m| m << 20), max_age },
            retention: warden_audit::segments::Retention {
                archive: k.archive_dir.clone(),
                keep_age: k.keep_days.map(|d| std::time::Duration::from_secs(d * 86_400)),
                keep_bytes: k.keep_gb.map(|g| (g * (1u64 << 30) as f64) as u64),
            },
        }))
    }
}

/// `[telemetry]`: OpenTelemetry traces. Trace context is always propagated (from the client's
/// `params._meta.traceparent` to the upstream's `traceparent` header and `_meta`) and the trace
/// id is in each audit record; spans are recorded only when `traces_url` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces endpoint (`…/v1/traces`, JSON): `https://…`, or
    /// `http://` to a loopback host.
    #[serde(serialize_with = "mask::opt_url")]
    pub traces_url: Option<String>,
    /// Headers sent with every export.
    #[serde(default, serialize_with = "mask::values")]
    pub headers: BTreeMap<String, String>,
    /// A listener of its own serving only `GET /metrics` (no credential), on any address: for a
    /// scraper outside the host, such as a Kubernetes ServiceMonitor (`"0.0.0.0:9464"`). The
    /// admin listener's `/metrics` (loopback) serves the same. Served with header, time and
    /// connection limits (64 connections, 16 per address). Default: none.
    pub metrics_addr: Option<SocketAddr>,
}

/// `[[audit.forward]]`: a copy of every stored record sent to a SIEM or an OpenTelemetry
/// collector over HTTP, in batches, through a disk spool: nothing is lost while the destination
/// is down (up to `spool_max_mb`), requests are retried with backoff, and delivery resumes after
/// a restart. At least once: de-duplicate on `chain` and `seq`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// A name for logs, metrics and the spool file.
    pub name: String,
    /// Where to POST: `https://…`, or `http://` to a loopback host. For `otlp`, the collector's
    /// logs endpoint (`…/v1/logs`).
    #[serde(serialize_with = "mask::url")]
    pub url: String,
    /// `"jsonl"` (default: the records as newline-delimited JSON, as stored) or `"otlp"`
    /// (OTLP/HTTP JSON logs: one log record per audit record, its fields as attributes).
    #[serde(default)]
    pub format: ForwardFormat,
    /// Headers sent with every request.
    #[serde(default, serialize_with = "mask::values")]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets (`Authorization = { env = "SIEM_TOKEN", prefix = "Splunk " }`).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, SecretRef>,
    /// Most records per request. Default 500.
    #[serde(default = "default_forward_batch")]
    pub batch: usize,
    /// Milliseconds between looks at the spool while there is nothing to send. Default 1000.
    #[serde(default = "default_forward_flush")]
    pub flush_ms: u64,
    /// Milliseconds a request may take. Default 10000.
    #[serde(default = "default_forward_timeout")]
    pub timeout_ms: u64,
    /// The spool file, relative to the config file. Default `<audit.path>.<name>.spool`.
    pub spool: Option<PathBuf>,
    /// Largest undelivered backlog, in MiB; beyond it records are dropped from this copy only
    /// (counted in `warden_audit_forward_dropped`). Default 1024.
    #[serde(default = "default_forward_spool_mb")]
    pub spool_max_mb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardFormat {
    #[default]
    Jsonl,
    Otlp,
}

impl ForwardConfig {
    /// The spool file: `spool`, or `<audit path>.<name>.spool`.
    pub fn spool_path(&self, audit: &AuditConfig) -> PathBuf {
        self.spool.clone().unwrap_or_else(|| {
            let mut s = audit.path.as_os_str().to_owned();
            s.push(format!(".{}.spool", self.name));
            PathBuf::from(s)
        })
    }
}

impl AuditConfig {
    /// Where the trail is kept (the password resolved now).
    pub fn store(&self) -> Result<warden_audit::Store, String> {
        Ok(match &self.url {
            Some(url) => warden_audit::Store::Postgres {
                url: url.clone(),
                password: self
                    .password
                    .as_ref()
                    .map(SecretRef::resolve)
                    .transpose()
                    .map_err(|e| format!("audit.password: {e}"))?,
            },
            None => warden_audit::Store::File(self.path.clone()),
        })
    }

    /// The checkpoint file: `checkpoint_file`, or `<path>.checkpoints`.
    pub fn checkpoints(&self) -> PathBuf {
        self.checkpoint_file.clone().unwrap_or_else(|| warden_audit::checkpoint_path(&self.path))
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Acknowledge {
    /// On disk before the answer: in the acknowledgement journal beside a local trail (the
    /// writer stores it in the trail; a Warden killed in between stores it at its next start),
    /// or, for PostgreSQL, committed.
    #[default]
    Stored,
    /// Committed to the trail itself before the answer (slower: a commit per call at low load).
    Committed,
    /// Queued in memory (lost if Warden is killed before the writer stores it).
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditArguments {
    None,
    #[default]
    Redacted,
    Full,
}

/// `instance = "name"`, or `instance = { env = "VAR" }` (read now; unset: an error).
fn instance_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FromEnv {
        env: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Named {
        Plain(String),
        Env(FromEnv),
    }
    match Named::deserialize(d)? {
        Named::Plain(s) => Ok(s),
        Named::Env(FromEnv { env }) => std::env::var(&env).map_err(|_| {
            serde::de::Error::custom(format!("expected a name, or {{ env = \"VAR\" }} with VAR set ({env} is not set)"))
        }),
    }
}
