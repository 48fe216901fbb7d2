//! The recorder: a bounded queue in front of one writer thread.
//!
//! The call path only stamps the time and pushes the event ([`Recorder::record`], a mutex and a
//! condition variable); the writer links each event into the hash chain, seals it, appends whole
//! batches to the sink (group commit: whatever queued while the last batch was written, plus up
//! to `group_commit` of waiting) and signs a checkpoint when it starts, every `checkpoint_every`
//! events or `checkpoint_interval`, and when it is closed. A caller that must not answer before its record is stored waits on
//! [`Recorder::stored`].
//!
//! A full queue is never silent: `OnFull::Reject` refuses the event (the caller fails the request
//! with 503), `OnFull::Drop` counts it, and the count is in every later checkpoint and in the
//! metrics. A failing sink is retried with backoff; records stay queued meanwhile, so a sink that
//! stays down fills the queue and the on-full policy applies.

mod rotate;

use crate::event::{Checkpoint, Event, GENESIS};
use crate::signing::SigningKey;
use crate::sink::{Sealed, Sink};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What to do with an event when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Refuse it: the request it records fails (503). Nothing happens unrecorded.
    #[default]
    Reject,
    /// Drop it and count the drop (metrics, and every later checkpoint).
    Drop,
}

pub struct Settings {
    /// This writer's chain id.
    pub chain: String,
    pub capacity: usize,
    pub on_full: OnFull,
    /// Most events per batch.
    pub max_batch: usize,
    /// How long the writer waits for a batch to fill before writing it (0: write at once
    /// whatever is queued).
    pub group_commit: Duration,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Where checkpoints are also appended (the anchor that reveals a truncated log).
    pub checkpoint_file: Option<PathBuf>,
    /// Spools of forwarders: every stored record is appended to each.
    pub spools: Vec<Arc<crate::spool::Spool>>,
    /// The acknowledgement journal's base path (`journal.rs`) of a local trail: what it holds
    /// unstored is stored at start, whatever `journal_acks` says.
    pub journal: Option<PathBuf>,
    /// New events are journaled before they are queued (else a caller that must not answer
    /// first waits for the sink, [`Recorder::stored`]).
    pub journal_acks: bool,
    /// A file trail's rotation and retention (`segments.rs`).
    pub segments: Option<crate::segments::Policy>,
}

/// The queue is full and the policy is to refuse.
#[derive(Debug)]
pub struct Full;

/// A queued event's place: [`Recorder::stored`] waits for it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// A queued event: its time, the event, when it was queued if lazy, its journal position.
type Item = (SystemTime, Event, Option<Instant>, Option<u64>);

struct Queue {
    /// Events with their time; lazy ones with when they were queued.
    items: VecDeque<Item>,
    /// Appended to in queue order, under this lock.
    journal: Option<crate::journal::Journal>,
    /// Queued events that are not lazy (someone may be waiting for them).
    eager: usize,
    /// Tickets handed out so far.
    next: u64,
    closing: bool,
}

/// How long the writer holds back a batch of only lazy events (see [`Recorder::record_lazy`]).
const LAZY_WAIT: Duration = Duration::from_millis(5);

struct Inner {
    q: Mutex<Queue>,
    wake: Condvar,
    /// Every ticket up to this one is stored.
    stored: AtomicU64,
    stored_notify: tokio::sync::Notify,
    dropped: AtomicU64,
    written: AtomicU64,
    failing: std::sync::atomic::AtomicBool,
    /// Events are journaled before they are queued.
    journaled: std::sync::atomic::AtomicBool,
    capacity: usize,
    on_full: OnFull,
}

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Recorder {
    /// Start the writer over `sink`; it continues the chain the sink already holds.
    /// All sink I/O, reading the head included, happens on the writer's thread (a database
    /// driver may not run on the caller's async runtime).
    pub fn start(settings: Settings, mut sink: Box<dyn Sink>, key: Option<SigningKey>) -> Result<Recorder, String> {
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue { items: VecDeque::new(), journal: None, eager: 0, next: 0, closing: false }),
            wake: Condvar::new(),
            stored: AtomicU64::new(0),
            stored_notify: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failing: false.into(),
            journaled: false.into(),
            capacity: settings.capacity.max(1),
            on_full: settings.on_full,
        });
        let w = inner.clone();
        let (started, result) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || {
                let head = match sink.head(&settings.chain) {
                    Ok(h) => h,
                    Err(e) => return drop(started.send(Err(e))),
                };
                let stored = head.as_ref().and_then(|h| h.journal);
                let mut writer = Writer {
                    inner: w,
                    sink,
                    key,
                    seq: head.as_ref().map_or(0, |h| h.seq),
                    prev: head.map_or_else(|| GENESIS.to_string(), |h| h.hash),
                    since_checkpoint: 0,
                    last_checkpoint: Instant::now(),
                    journal_pos: stored,
                    segment_started: settings
                        .segments
                        .as_ref()
                        .and_then(|p| crate::segments::first_time(&p.active))
                        .unwrap_or_else(SystemTime::now),
                    rotation_failed: None,
                    s: settings,
                };
                if let Err(e) = writer.prepare(stored) {
                    return drop(started.send(Err(e)));
                }
                let _ = started.send(Ok(()));
                writer.run()
            })
            .map_err(|e| format!("audit writer thread: {e}"))?;
        result.recv().map_err(|_| "audit writer thread ended".to_string())??;
        Ok(Recorder { inner, writer: Arc::new(Mutex::new(Some(handle))) })
    }

    /// Queue `e`, stamped now.
    pub fn record(&self, e: Event) -> Result<Ticket, Full> {
        self.push(e, false)
    }

    /// Queue `e`, stamped now, without hurrying the writer: an event nobody waits for (the
    /// attempt of an upstream call, whose outcome follows within microseconds to seconds). The
    /// writer holds a batch of only such events back for at most [`LAZY_WAIT`], so that an
    /// attempt and its outcome usually share one commit instead of the outcome waiting behind the
    /// attempt's. Accepted into the queue at once all the same (the queue's capacity, `OnFull`).
    pub fn record_lazy(&self, e: Event) -> Result<Ticket, Full> {
        self.push(e, true)
    }

    fn push(&self, e: Event, lazy: bool) -> Result<Ticket, Full> {
        let now = SystemTime::now();
        let mut q = self.inner.q.lock();
        let full = q.items.len() >= self.inner.capacity || q.closing;
        // On disk before it is queued: an acknowledged event survives Warden being killed.
        let pos = match q.journal.as_mut().filter(|_| !full).map(|j| j.append(now, &e)) {
            Some(Err(err)) => {
                drop(q);
                tracing::error!(error = %err, "audit journal write failed; event refused");
                // As for a full queue: refused (the request fails), or dropped and counted.
                if self.inner.on_full == OnFull::Drop {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return Err(Full);
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        if full {
            drop(q);
            if self.inner.on_full == OnFull::Drop {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return Err(Full);
        }
        // A journaled event is safe on disk: nobody waits for the trail, and the writer may take
        // its time to gather a batch (one commit for many, less CPU taken from the calls).
        let lazy = lazy || pos.is_some();
        let first = q.items.is_empty();
        q.items.push_back((now, e, lazy.then(Instant::now), pos));
        q.eager += usize::from(!lazy);
        q.next += 1;
        let t = Ticket(q.next);
        drop(q);
        // The writer holding lazy events wakes on its own timer; it needs a nudge only for an
        // eager event or the first of a batch.
        if !lazy || first {
            self.inner.wake.notify_one();
        }
        Ok(t)
    }

    /// Wait until the ticket's event is stored in the sink, at most `limit`. False on timeout.
    pub async fn stored(&self, t: Ticket, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let n = self.inner.stored_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.inner.stored.load(Ordering::Acquire) >= t.0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return self.inner.stored.load(Ordering::Acquire) >= t.0;
            }
        }
    }

    /// The same, blocking (tests, the CLI).
    pub fn stored_blocking(&self, t: Ticket, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.inner.stored.load(Ordering::Acquire) < t.0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Events are on disk (the journal) once [`Recorder::record`] returns: no need to wait for
    /// [`Recorder::stored`] to know they survive Warden being killed.
    pub fn journaled(&self) -> bool {
        self.inner.journaled.load(Ordering::Acquire)
    }

    pub fn on_full(&self) -> OnFull {
        self.inner.on_full
    }
    /// The queue is at capacity.
    pub fn full(&self) -> bool {
        self.depth() >= self.inner.capacity
    }
    pub fn depth(&self) -> usize {
        self.inner.q.lock().items.len()
    }
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
    /// Events written so far by this process.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }
    /// The sink is failing (writes are being retried).
    pub fn failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// Write what is queued, sign a last checkpoint and stop the writer.
    pub fn close(&self) {
        self.inner.q.lock().closing = true;
        self.inner.wake.notify_one();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

struct Writer {
    inner: Arc<Inner>,
    sink: Box<dyn Sink>,
    key: Option<SigningKey>,
    seq: u64,
    prev: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// The last journal position stored (carried on every sealed record).
    journal_pos: Option<u64>,
    /// When the active file's first record was written (its age, for rotation).
    segment_started: SystemTime,
    /// The last failed rotation: the next try waits a minute.
    rotation_failed: Option<Instant>,
    s: Settings,
}

impl Writer {
    /// Before anything new is queued: the start checkpoint, then what the journal holds past
    /// `stored` (a killed Warden's acknowledged events), stored; then a fresh journal.
    fn prepare(&mut self, stored: Option<u64>) -> Result<(), String> {
        // A checkpoint at start signs the head this Warden continues from (genesis for a new
        // chain): every chain written with a key holds at least one, so a chain rewritten with
        // its checkpoints dropped is found however short it is. Records after the last
        // checkpoint the checkpoint file holds (a crash's unsigned tail, or records someone
        // appended) are said so first, on the record the start checkpoint then covers.
        self.note_inherited();
        self.checkpoint(Some("start"));
        self.apply_retention();
        let Some(base) = self.s.journal.clone() else { return Ok(()) };
        let (newest, replay) = crate::journal::unstored(&base, &self.s.chain, stored)?;
        if !replay.is_empty() {
            tracing::warn!(
                records = replay.len(),
                "audit: storing the journal's records a stopped Warden acknowledged"
            );
            for chunk in replay.chunks(self.s.max_batch.max(1)) {
                let sealed: Vec<Sealed> =
                    chunk.iter().map(|(at, e, pos)| self.seal(*at, e.clone(), Some(*pos))).collect();
                self.write(&sealed);
                self.inner.written.fetch_add(sealed.len() as u64, Ordering::Relaxed);
                self.since_checkpoint += sealed.len() as u64;
            }
            // Signed at once: the replayed records carry their old times.
            self.checkpoint(None);
        }
        if !self.s.journal_acks {
            crate::journal::remove(&base);
            return Ok(());
        }
        // Past every generation the trail has seen too (journal files removed by hand must not
        // make new positions look stored).
        let generation = newest.max(stored.map_or(0, crate::journal::generation_of)) + 1;
        let journal = crate::journal::Journal::start(&base, &self.s.chain, generation)?;
        self.inner.q.lock().journal = Some(journal);
        self.inner.journaled.store(true, Ordering::Release);
        Ok(())
    }

    fn run(&mut self) {
        let mut batch: Vec<(SystemTime, Event, Option<u64>)> = Vec::with_capacity(self.s.max_batch);
        loop {
            let (last_ticket, closing) = {
                let mut q = self.inner.q.lock();
                loop {
                    if q.closing || q.eager > 0 || q.items.len() >= self.s.max_batch {
                        break;
                    }
                    // Only lazy events: hold them back a moment for company.
                    if let Some(at) = q.items.front().and_then(|i| i.2) {
                        let waited = at.elapsed();
                        if waited >= LAZY_WAIT {
                            break;
                        }
                        let _ = self.inner.wake.wait_for(&mut q, LAZY_WAIT - waited);
                        continue;
                    }
                    let due = self.checkpoint_due_in();
                    // A trail in segments also wakes once a minute while idle: rotation by age and
                    // retention by age go on without new records.
                    let timed = if self.s.segments.is_some() { due.min(Duration::from_secs(60)) } else { due };
                    if self.inner.wake.wait_for(&mut q, timed).timed_out()
                        && (self.checkpoint_due() || self.s.segments.is_some())
                    {
                        break;
                    }
                }
                if !self.s.group_commit.is_zero() && q.items.len() < self.s.max_batch && !q.closing {
                    let _ = self.inner.wake.wait_for(&mut q, self.s.group_commit);
                }
                let n = q.items.len().min(self.s.max_batch);
                let eager = q.items.iter().take(n).filter(|i| i.2.is_none()).count();
                q.eager -= eager;
                batch.extend(q.items.drain(..n).map(|(at, e, _, pos)| (at, e, pos)));
                (q.next - q.items.len() as u64, q.closing && q.items.is_empty())
            };
            if !batch.is_empty() {
                let sealed: Vec<Sealed> = batch.drain(..).map(|(at, e, pos)| self.seal(at, e, pos)).collect();
                self.write(&sealed);
                if let Some(p) = self.journal_pos {
                    if let Some(j) = self.inner.q.lock().journal.as_mut() {
                        j.stored(p);
                    }
                }
                self.inner.written.fetch_add(sealed.len() as u64, Ordering::Relaxed);
                self.since_checkpoint += sealed.len() as u64;
                // A retention anchor counts only signed: whoever waits for it waits for that.
                if sealed.iter().any(|s| s.event.anchor.is_some()) {
                    self.checkpoint(None);
                }
                self.inner.stored.store(last_ticket, Ordering::Release);
                self.inner.stored_notify.notify_waiters();
            }
            if closing {
                // Always, even with nothing new: only this Warden's next start may follow it.
                self.checkpoint(Some("close"));
                // Everything journaled is stored: nothing for a later start to replay.
                if self.inner.q.lock().journal.take().is_some() {
                    if let Some(base) = &self.s.journal {
                        crate::journal::remove(base);
                    }
                }
            } else if self.checkpoint_due() {
                self.checkpoint(None);
            }
            if closing {
                return;
            }
            self.rotate_if_due();
        }
    }

    fn checkpoint_due(&self) -> bool {
        self.key.is_some()
            && self.since_checkpoint > 0
            && (self.since_checkpoint >= self.s.checkpoint_every
                || self.last_checkpoint.elapsed() >= self.s.checkpoint_interval)
    }

    fn checkpoint_due_in(&self) -> Duration {
        if self.key.is_none() || self.since_checkpoint == 0 {
            return Duration::from_secs(3600);
        }
        self.s.checkpoint_interval.saturating_sub(self.last_checkpoint.elapsed()).max(Duration::from_millis(1))
    }

    fn seal(&mut self, at: SystemTime, mut e: Event, journal: Option<u64>) -> Sealed {
        e.ts = humantime::format_rfc3339_micros(at).to_string();
        if journal.is_some() {
            self.journal_pos = journal;
        }
        e.journal = self.journal_pos;
        self.seq += 1;
        let line = e.seal(&self.s.chain, self.seq, &self.prev);
        self.prev.clone_from(e.hash.as_ref().expect("sealed"));
        Sealed { event: e, line }
    }

    /// Append, retrying with backoff until it is stored (the queue behind it fills meanwhile).
    fn write(&mut self, sealed: &[Sealed]) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.sink.append(sealed) {
                Ok(()) => {
                    if self.inner.failing.swap(false, Ordering::Relaxed) {
                        tracing::warn!("audit sink recovered");
                    }
                    for spool in &self.s.spools {
                        spool.append(sealed);
                    }
                    return;
                }
                Err(e) => {
                    if !self.inner.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, "audit sink write failed; retrying (records stay queued)");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Before the start checkpoint: how many records follow the last checkpoint of this chain in
    /// the checkpoint file (none after a clean stop), recorded when there are any.
    fn note_inherited(&mut self) {
        let (Some(path), true) = (&self.s.checkpoint_file, self.key.is_some()) else { return };
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let last = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Event>(l).ok())
            .find(|e| e.chain == self.s.chain)
            .map(|e| e.seq);
        let Some(last) = last.filter(|l| self.seq > *l) else { return };
        let n = self.seq - last;
        tracing::warn!(chain = %self.s.chain, after_seq = last, records = n,
            "audit: records after the last anchored checkpoint (a crash's unsigned tail, or appended by someone else); the start checkpoint covers them, this record says how many");
        let mut e = Event::new("audit", "success");
        e.detail = Some("inherited_unsigned".into());
        e.count = Some(n);
        let sealed = self.seal(SystemTime::now(), e, None);
        self.write(std::slice::from_ref(&sealed));
    }

    fn checkpoint(&mut self, phase: Option<&str>) {
        let Some(key) = &self.key else { return };
        let dropped = self.inner.dropped.load(Ordering::Relaxed);
        let sig = key.sign(&Checkpoint::payload(&self.s.chain, self.seq, &self.prev, dropped, phase));
        let cp = Checkpoint {
            dropped,
            hash: self.prev.clone(),
            key: key.public_key(),
            phase: phase.map(str::to_string),
            seq: self.seq,
            sig,
        };
        let mut e = Event::new("checkpoint", "success");
        e.checkpoint = Some(cp);
        let sealed = self.seal(SystemTime::now(), e, None);
        self.write(std::slice::from_ref(&sealed));
        if let Some(path) = &self.s.checkpoint_file {
            if let Err(err) = append_line(path, &sealed.line) {
                tracing::error!(error = %err, path = %path.display(), "cannot append the audit checkpoint file");
            }
        }
        tracing::info!(chain = %self.s.chain, seq = sealed.event.seq, hash = %self.prev, "audit checkpoint signed");
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }
}

fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}
