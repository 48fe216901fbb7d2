use super::*;
use crate::signing::SigningKey;
use std::time::Duration;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("warden-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings(log: &Path, every: u64) -> Settings {
    Settings {
        chain: "main".into(),
        capacity: 100_000,
        on_full: OnFull::Reject,
        max_batch: 512,
        group_commit: Duration::ZERO,
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(60),
        checkpoint_file: Some(checkpoint_path(log)),
        spools: Vec::new(),
        journal: None,
        journal_acks: false,
        segments: None,
    }
}

/// Write `n` call events to a fresh log and close it; returns the key's public half.
fn write_log(log: &Path, n: usize, every: u64) -> String {
    write_chunks(log, &[n], every)
}

/// [`write_log`] in chunks, each stored before the next is sent: a chunk of at least `every`
/// events ends with a periodic checkpoint, however the writer batches.
fn write_chunks(log: &Path, chunks: &[usize], every: u64) -> String {
    let kf = log.with_extension("key");
    let key = SigningKey::load(&kf).or_else(|_| SigningKey::generate(&kf)).unwrap();
    let public = key.public_key();
    let r =
        Recorder::start(settings(log, every), open_sink(&Store::File(log.into()), Fsync::Never).unwrap(), Some(key))
            .unwrap();
    let mut i = 0;
    for &n in chunks {
        let mut last = None;
        for _ in 0..n {
            let mut e = Event::new("call", if i % 3 == 0 { "success" } else { "backend_error" });
            e.subject = Some(format!("user{}", i % 4));
            e.name = Some("echo".into());
            e.decision = Some("allowed".into());
            last = Some(r.record(e).unwrap());
            i += 1;
        }
        if let Some(t) = last {
            assert!(r.stored_blocking(t, Duration::from_secs(10)));
        }
    }
    r.close();
    public
}

fn verify_file(log: &Path, key: &str) -> Result<verify::Report, String> {
    verify(&Store::File(log.into()), &[checkpoint_path(log)], verify::Expect::new(Some(key), 1000, 60))
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect()
}

fn put_lines(p: &Path, l: &[String]) {
    std::fs::write(p, l.join("\n") + "\n").unwrap();
}

fn problems(p: &Path, key: &str) -> Vec<String> {
    let r = verify_file(p, key).unwrap();
    r.problems
}

#[test]
fn a_clean_jsonl_log_verifies_and_continues_across_restarts() {
    let d = dir("jsonl-clean");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 250, 100);
    let key2 = write_log(&log, 10, 100);
    assert_eq!(key, key2);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    let c = &r.chains["main"];
    // Checkpoints at each start, at batch ends once 100 events have passed, and at each close.
    assert!(c.checkpoints >= 4, "{c:?}");
    assert_eq!(c.records, 260 + c.checkpoints, "{c:?}");
    assert_eq!(c.signed_through, c.seq, "closed logs end with a checkpoint");
    assert_eq!(lines(&checkpoint_path(&log)).len() as u64, c.checkpoints);
}

#[test]
fn tampering_with_a_jsonl_log_is_found_and_located() {
    let d = dir("jsonl-tamper");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 50, 1000);
    let orig = lines(&log);

    // Edited: a denied call made to look like a success.
    let mut l = orig.clone();
    assert!(l[11].contains("backend_error"));
    l[11] = l[11].replace("backend_error", "success");
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 12:") && m.contains("edited")), "{p:?}");

    // Edited with the hash recomputed: the next record's prev gives it away.
    let mut v: serde_json::Value = serde_json::from_str(&orig[9]).unwrap();
    v["subject"] = "someone-else".into();
    v["hash"] = event::expected_hash(&v).into();
    let mut l = orig.clone();
    l[9] = warden_policy::canonical::to_string(&v);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 11:") && m.contains("rewritten")), "{p:?}");

    // Deleted.
    let mut l = orig.clone();
    l.remove(20);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 21:") && m.contains("jumps from seq 20 to 22")), "{p:?}");

    // Reordered.
    let mut l = orig.clone();
    l.swap(30, 31);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 32:") && m.contains("reordered")), "{p:?}");

    // Cut from the start.
    put_lines(&log, &orig[5..]);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 1:") && m.contains("starts at seq 6")), "{p:?}");

    // Truncated at the end, final checkpoint and all: the checkpoint file remembers.
    put_lines(&log, &orig[..40]);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("ends at seq 40") && m.contains("truncated")), "{p:?}");

    // A checkpoint verified against another key.
    put_lines(&log, &orig);
    let other = SigningKey::generate(&d.join("other.key")).unwrap().public_key();
    let p = problems(&log, &other);
    assert!(p.iter().any(|m| m.contains("another key")), "{p:?}");

    // A garbage line.
    let mut l = orig.clone();
    l[3] = "{not json".into();
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("line 4:") && m.contains("not a JSON record")), "{p:?}");

    put_lines(&log, &orig);
    assert!(problems(&log, &key).is_empty());
}

/// Re-link `lines` from seq 1 as a forger without the key would: records changed by `edit`,
/// checkpoint records dropped (or re-signed with `resign`), every hash recomputed. Returns the
/// forged log and the forged checkpoint lines.
fn forge(
    lines: &[String],
    edit: impl Fn(&mut serde_json::Value),
    resign: Option<&SigningKey>,
) -> (Vec<String>, Vec<String>) {
    let (mut out, mut cps) = (Vec::new(), Vec::new());
    let mut prev = event::GENESIS.to_string();
    for l in lines {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v.get("checkpoint").is_some() {
            let Some(k) = resign else { continue };
            let seq = out.len() as u64;
            let phase = v["checkpoint"]["phase"].as_str().map(str::to_string);
            let sig = k.sign(&Checkpoint::payload("main", seq, &prev, 0, phase.as_deref()));
            v["checkpoint"] =
                serde_json::json!({"dropped": 0, "hash": prev, "key": k.public_key(), "seq": seq, "sig": sig});
            if let Some(p) = phase {
                v["checkpoint"]["phase"] = p.into();
            }
        }
        edit(&mut v);
        v["seq"] = (out.len() as u64 + 1).into();
        v["prev"] = prev.clone().into();
        v["hash"] = event::expected_hash(&v).into();
        prev = v["hash"].as_str().unwrap().to_string();
        let line = warden_policy::canonical::to_string(&v);
        if v.get("checkpoint").is_some() {
            cps.push(line.clone());
        }
        out.push(line);
    }
    (out, cps)
}

/// Issue 20 finding 1: a trail rewritten from seq 1 by someone without the key (an `echo` call
/// made `denied`, every hash recomputed, checkpoints dropped, the checkpoint file deleted or
/// rewritten, or everything re-signed with a key of their own) fails verification, whichever
/// way it is tried; so does any verification without a pinned key.
#[test]
fn a_trail_rewritten_without_the_key_fails_verification() {
    let d = dir("forgery");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 30, 1000);
    let orig = lines(&log);
    let cpf = checkpoint_path(&log);
    let orig_cps = lines(&cpf);
    assert!(problems(&log, &key).is_empty());
    let deny = |v: &mut serde_json::Value| {
        if v["kind"] == "call" {
            v["decision"] = "denied".into();
            v["args"] = serde_json::json!({"text": "never sent"});
        }
    };

    // Checkpoints dropped from the log, the checkpoint file deleted.
    let (forged, _) = forge(&orig, deny, None);
    put_lines(&log, &forged);
    std::fs::remove_file(&cpf).unwrap();
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("no valid signed checkpoint")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("no checkpoint file")), "{p:?}");

    // … with the checkpoint file emptied instead.
    put_lines(&cpf, &[]);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("no valid signed checkpoint")), "{p:?}");

    // … with the checkpoint file kept: the log no longer holds what it anchors.
    put_lines(&cpf, &orig_cps);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("missing from the log")), "{p:?}");

    // Re-signed with the forger's own key, checkpoint file rewritten to match.
    let theirs = SigningKey::generate(&d.join("theirs.key")).unwrap();
    let (forged, cps) = forge(&orig, deny, Some(&theirs));
    put_lines(&log, &forged);
    put_lines(&cpf, &cps);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("another key than the pinned one")), "{p:?}");
    // … which passes only when the verifier is handed the forger's key: hence the pin, off the host.
    assert!(problems(&log, &theirs.public_key()).is_empty());

    // No pinned key at all: a problem, however clean the trail.
    put_lines(&log, &orig);
    put_lines(&cpf, &orig_cps);
    let r = verify(&Store::File(log.clone()), std::slice::from_ref(&cpf), verify::Expect::new(None, 1000, 60)).unwrap();
    assert!(r.problems.iter().any(|m| m.contains("no pinned checkpoint key")), "{:?}", r.problems);
    // No checkpoint file named: a problem too.
    let r = verify(&Store::File(log.clone()), &[], verify::Expect::new(Some(&key), 1000, 60)).unwrap();
    assert!(r.problems.iter().any(|m| m.contains("no checkpoint file")), "{:?}", r.problems);

    // A checkpoint dropped from the middle of the checkpoint file (the last may be missing
    // after a kill: a note).
    let mut cps = orig_cps.clone();
    assert!(cps.len() >= 2);
    cps.remove(0);
    put_lines(&cpf, &cps);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("missing from the checkpoint file")), "{p:?}");
    put_lines(&cpf, &orig_cps[..orig_cps.len() - 1]);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.notes.iter().any(|n| n.contains("Warden killed while appending")), "{:?}", r.notes);
    put_lines(&cpf, &orig_cps);

    // A repeated key prepended to a stored line: the hash still matches the parsed record
    // (the last key wins there), but a first-key-wins reader would see `success`.
    let mut l = orig.clone();
    let i = l.iter().position(|x| x.contains("\"backend_error\"")).unwrap();
    l[i] = l[i].replacen('{', "{\"status\":\"success\",", 1);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("canonical form")), "{p:?}");
    put_lines(&log, &orig);
    assert!(problems(&log, &key).is_empty());
}

/// Review finding: records appended after a clean stop (hash-linked, within the tail window)
/// were signed by the next start checkpoint. Now they are a problem before the restart (only a
/// start may follow a close checkpoint), and the restart records how many it inherited.
#[test]
fn records_appended_after_a_clean_stop_are_found() {
    let d = dir("after-close");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 5, 1000);
    let mut l = lines(&log);
    let last: serde_json::Value = serde_json::from_str(l.last().unwrap()).unwrap();
    assert_eq!(last["checkpoint"]["phase"], "close", "a clean stop ends with a close checkpoint");
    let mut forged = serde_json::json!({"chain": "main", "kind": "call", "status": "success", "decision": "allowed",
        "subject": "alice", "name": "transfer", "ts": last["ts"], "seq": last["seq"].as_u64().unwrap() + 1, "prev": last["hash"]});
    forged["hash"] = event::expected_hash(&forged).into();
    l.push(warden_policy::canonical::to_string(&forged));
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("after the clean stop")), "{p:?}");
    // A restart signs over it, but says so first.
    write_log(&log, 1, 1000);
    let recs = lines(&log);
    assert!(recs.iter().any(|r| r.contains("\"inherited_unsigned\"") && r.contains("\"count\":1")), "{recs:?}");
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("after the clean stop")), "still found: {p:?}");
}

/// The unsigned end of a chain is a note while it is no longer than a running Warden leaves,
/// and a problem beyond (the last checkpoints dropped and the end rewritten).
#[test]
fn an_unsigned_tail_beyond_the_window_is_a_problem() {
    let d = dir("tail");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 40, 1000);
    let mut l = lines(&log);
    assert!(l.pop().unwrap().contains("\"checkpoint\""), "closed logs end with a checkpoint");
    put_lines(&log, &l);
    let mut cps = lines(&checkpoint_path(&log));
    cps.pop();
    put_lines(&checkpoint_path(&log), &cps);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.notes.iter().any(|n| n.contains("40 record(s) after seq 1 are not yet covered")), "{:?}", r.notes);
    let tight = verify::Expect { tail_records: 10, ..verify::Expect::new(Some(&key), 1000, 60) };
    let r = verify(&Store::File(log.clone()), &[checkpoint_path(&log)], tight).unwrap();
    assert!(r.problems.iter().any(|m| m.contains("covered by no signed checkpoint")), "{:?}", r.problems);
}

#[test]
fn a_partial_last_line_is_cut_before_appending() {
    let d = dir("jsonl-partial");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 5, 1000);
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"chain\":\"main\",\"seq\":"); // a write cut short
    std::fs::write(&log, text).unwrap();
    write_log(&log, 5, 1000);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
}

#[test]
fn sqlite_log_verifies_and_tampering_is_found() {
    let d = dir("sqlite");
    let log = d.join("audit.db");
    let key = write_log(&log, 120, 50);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.records, 120 + r.chains["main"].checkpoints);
    let c = rusqlite::Connection::open(&log).unwrap();
    // Issue 24: a new database keeps no copy of the fields queries filter on, so there is no
    // column to edit apart from its record.
    assert!(c.execute("UPDATE audit_events SET subject = 'nobody' WHERE id = 7", []).is_err());
    // Review finding M2: a generated column redefined (through writable_schema) to hide records
    // from time queries is found.
    {
        let w = rusqlite::Connection::open(&log).unwrap();
        w.execute_batch(
            "PRAGMA writable_schema = ON; \
             UPDATE sqlite_master SET sql = replace(sql, '$.ts', '$.kind') WHERE name = 'audit_events'; \
             PRAGMA writable_schema = OFF;",
        )
        .unwrap();
    }
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("redefined")), "{p:?}");
    {
        let w = rusqlite::Connection::open(&log).unwrap();
        w.execute_batch(
            "PRAGMA writable_schema = ON; \
             UPDATE sqlite_master SET sql = replace(sql, '$.kind'')) VIRTUAL,\n    kind', '$.ts'')) VIRTUAL,\n    kind') WHERE name = 'audit_events'; \
             PRAGMA writable_schema = OFF;",
        )
        .unwrap();
    }
    // A database made by an earlier version (the first schema, the fields stored twice) is
    // still written as it is, and its columns are checked against the records: hide a record
    // from queries by editing only its index column.
    let old = d.join("v1.db");
    rusqlite::Connection::open(&old).unwrap().execute_batch(crate::sqlite_schema::SCHEMA_V1).unwrap();
    let old_key = write_log(&old, 120, 50);
    let o = rusqlite::Connection::open(&old).unwrap();
    o.execute("UPDATE audit_events SET subject = 'nobody' WHERE id = 7", []).unwrap();
    let p = problems(&old, &old_key);
    assert!(p.iter().any(|m| m.starts_with("row 7:") && m.contains("column subject")), "{p:?}");
    o.execute("UPDATE audit_events SET subject = 'user1' WHERE id = 7", []).unwrap();
    assert!(problems(&old, &old_key).is_empty());
    c.execute("DELETE FROM audit_events WHERE id = 60", []).unwrap();
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.starts_with("row 61:") && m.contains("deleted")), "{p:?}");
    c.execute("DELETE FROM audit_events WHERE id > 100", []).unwrap();
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("truncated")), "{p:?}");
}

#[test]
fn query_filters_on_both_sinks() {
    for name in ["q.jsonl", "q.db"] {
        let d = dir(&format!("query-{name}"));
        let log = d.join(name);
        write_log(&log, 40, 1000);
        let f = Filter { subject: Some("user1".into()), status: Some("backend_error".into()), ..Filter::default() };
        let mut got = Vec::new();
        scan(&Store::File(log.clone()), 0, Some(&f), |s| {
            got.push(serde_json::from_str::<Event>(&s.line).unwrap());
            true
        })
        .unwrap();
        // i % 4 == 1 and i % 3 != 0, i < 40: 1,5,13,17,25,29,37 → 7
        assert_eq!(got.len(), 7, "{name}");
        assert!(got.iter().all(|e| f.matches(e)));
    }
}

#[test]
fn a_full_queue_rejects_or_counts() {
    struct Stuck;
    impl sink::Sink for Stuck {
        fn head(&mut self, _: &str) -> Result<Option<crate::sink::Head>, String> {
            Ok(None)
        }
        fn append(&mut self, _: &[sink::Sealed]) -> Result<(), String> {
            Err("disk on fire".into())
        }
    }
    for on_full in [OnFull::Reject, OnFull::Drop] {
        let s = Settings { capacity: 10, on_full, checkpoint_file: None, ..settings(Path::new("x"), 1000) };
        let r = Recorder::start(s, Box::new(Stuck), None).unwrap();
        let mut refused = 0;
        for _ in 0..100 {
            if r.record(Event::new("call", "success")).is_err() {
                refused += 1;
            }
        }
        // The writer took one batch (≤ 10) and is retrying it; the queue holds 10 more.
        assert!(refused >= 80, "{refused}");
        assert_eq!(r.dropped(), if on_full == OnFull::Drop { refused } else { 0 });
        std::thread::sleep(Duration::from_millis(100));
        assert!(r.failing());
    }
}

/// The SQLite WAL is moved into the database by the checkpointer thread, not by the commit that
/// fills it (which made a call wait for a copy and an fsync: the audit-on p99). The writer only
/// checkpoints past 64 MiB of WAL itself, so a database file that grows to hold ~5 MB written
/// through the WAL shows the checkpointer at work. Polled, not timed: a slow disk only makes the
/// test take longer (it failed on a slow CI disk when it asserted a WAL size after fixed sleeps).
#[test]
fn the_sqlite_wal_is_checkpointed_off_the_writer() {
    use crate::sink::{Sealed, Sink, Sqlite};
    let d = dir("wal");
    let db = d.join("audit.db");
    let mut s = Sqlite::open(&db, Fsync::Never).unwrap();
    let pad = format!("{{\"pad\":\"{}\"}}", "x".repeat(3990));
    let records = 1200u64;
    for i in 0..records {
        let mut e = Event::new("call", "success");
        e.chain = "main".into();
        e.seq = i + 1;
        e.hash = Some(format!("{i:064}"));
        e.ts = "2026-12-06T00:00:00Z".into();
        s.append(&[Sealed { event: e, line: pad.clone() }]).unwrap();
    }
    // The checkpointer moves the WAL once 250 records are in it: at most that many stay behind
    // (how many depends on when its ticks fall between the appends).
    let want = (records - 250) * 4000;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut len = 0;
    while std::time::Instant::now() < deadline {
        len = std::fs::metadata(&db).unwrap().len();
        if len >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(len >= want, "the database file holds {len} bytes of {want} written: nothing checkpointed it");
    let n: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, records as i64);
}

/// A sink that counts its commits.
struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl crate::sink::Sink for Counting {
    fn head(&mut self, _chain: &str) -> Result<Option<crate::sink::Head>, String> {
        Ok(None)
    }
    fn append(&mut self, _batch: &[crate::sink::Sealed]) -> Result<(), String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The attempt of an upstream call is queued lazily: its outcome, arriving soon after, shares
/// its commit (the outcome's caller then waits for one commit, not two); a lone lazy event is
/// still written within milliseconds.
#[test]
fn lazy_events_wait_briefly_for_company() {
    use std::sync::atomic::Ordering::SeqCst;
    let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = dir("lazy");
    let mut s = settings(&d.join("x.jsonl"), 1_000_000);
    s.checkpoint_file = None;
    let r = Recorder::start(s, Box::new(Counting(commits.clone())), None).unwrap();
    r.record_lazy(Event::new("call", "attempted")).unwrap();
    std::thread::sleep(Duration::from_micros(500));
    let t = r.record(Event::new("call", "success")).unwrap();
    assert!(r.stored_blocking(t, Duration::from_secs(5)));
    assert_eq!(commits.load(SeqCst), 1, "attempt and outcome in one commit");
    let t = r.record_lazy(Event::new("call", "attempted")).unwrap();
    assert!(r.stored_blocking(t, Duration::from_secs(1)), "a lone lazy event is written anyway");
    assert_eq!(commits.load(SeqCst), 2);
    assert_eq!(r.written(), 3);
    r.close();
}

/// The acknowledgement journal (`journal.rs`): what a killed Warden journaled but did not store
/// is stored at the next start, once, in order, with its original time — and what it had stored
/// is not stored again; a clean stop leaves no journal; a segment that cannot be read stops the
/// start instead of being overwritten; the chain verifies.
#[test]
fn a_killed_writers_journaled_events_are_stored_at_the_next_start() {
    for name in ["audit.db", "audit.jsonl"] {
        let d = dir(&format!("journal-{name}"));
        let log = d.join(name);
        let base = d.join(format!("{name}.journal"));
        let seg = |x: &str| d.join(format!("{name}.journal.{x}"));
        let kf = log.with_extension("key");
        let key = || SigningKey::load(&kf).or_else(|_| SigningKey::generate(&kf)).unwrap();
        let public = key().public_key();
        let start = || {
            let mut s = settings(&log, 1000);
            s.journal = Some(base.clone());
            s.journal_acks = true;
            Recorder::start(s, open_sink(&Store::File(log.clone()), Fsync::Never).unwrap(), Some(key()))
        };
        let calls = || {
            let mut out: Vec<Event> = Vec::new();
            scan(&Store::File(log.clone()), 0, None, |s| {
                let e = serde_json::from_str::<Event>(&s.line).unwrap();
                if e.kind == "call" {
                    out.push(e);
                }
                true
            })
            .unwrap();
            out
        };
        // A first run: journaled, stored, closed: no journal is left.
        let r = start().unwrap();
        assert!(r.journaled());
        for i in 0..5 {
            let mut e = Event::new("call", "success");
            e.name = Some(format!("stored-{i}"));
            r.record(e).unwrap();
        }
        assert!(seg("a").exists());
        r.close();
        assert!(!seg("a").exists() && !seg("b").exists(), "{name}: a clean stop leaves no journal");
        // A killed Warden's segment: the trail stored it up to the last stored record's
        // position (one entry ends exactly there), then three more it acknowledged, then a torn
        // line it was writing when killed.
        let stored = calls().iter().filter_map(|e| e.journal).max().unwrap();
        let (generation, offset) = (journal::generation_of(stored), stored & 0xffff_ffff);
        let header = format!("{{\"chain\":\"main\",\"generation\":{generation},\"warden_audit_journal\":1}}\n");
        let entry = |n: &str, at: &str| {
            let mut e = Event::new("call", "success");
            e.name = Some(n.into());
            serde_json::to_string(&serde_json::json!({"at": at, "event": e})).unwrap()
        };
        let first = entry("already-stored", "2026-01-01T00:00:00Z");
        let pad = offset as usize - header.len() - first.len() - 1;
        let mut text = format!("{header}{first}{}\n", " ".repeat(pad));
        for k in 0..3 {
            text += &format!("{}\n", entry(&format!("killed-{k}"), "2027-01-15T08:00:00.000001Z"));
        }
        text += &entry("torn", "2027-01-15T08:00:01Z")[..20];
        std::fs::write(seg("a"), &text).unwrap();
        // Something unreadable where a segment should be: the start stops, nothing is lost.
        std::fs::write(seg("b"), "not a journal\n").unwrap();
        let refused = start().err().unwrap_or_default();
        assert!(refused.contains("not an audit journal segment"), "{name}: {refused}");
        assert!(seg("a").exists(), "{name}: the journal is kept");
        std::fs::remove_file(seg("b")).unwrap();
        // Restart: the three are stored, once, with their time; then a clean stop.
        start().unwrap().close();
        start().unwrap().close();
        let records = calls();
        let names: Vec<String> = records.iter().filter_map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            ["stored-0", "stored-1", "stored-2", "stored-3", "stored-4", "killed-0", "killed-1", "killed-2"],
            "{name}"
        );
        let killed = records.iter().find(|e| e.name.as_deref() == Some("killed-0")).unwrap();
        assert_eq!(killed.ts, "2027-01-15T08:00:00.000001Z");
        assert!(records.iter().all(|e| e.journal.is_some()), "each record says how far the journal is stored");
        let report =
            verify(&Store::File(log.clone()), &[checkpoint_path(&log)], verify::Expect::new(Some(&public), 1000, 60))
                .unwrap();
        assert!(report.ok(), "{name}: {:?}", report.problems);
    }
}

/// Segments take turns: the closed one goes once an event of the next is stored, so the
/// journal stays near one segment however long the writer runs.
#[test]
fn the_journal_stays_bounded() {
    let d = dir("journal-bounded");
    let log = d.join("audit.db");
    let mut s = settings(&log, 1_000_000);
    s.journal = Some(d.join("audit.db.journal"));
    s.journal_acks = true;
    let r = Recorder::start(s, open_sink(&Store::File(log.clone()), Fsync::Never).unwrap(), None).unwrap();
    let mut last = None;
    for i in 0..30_000 {
        let mut e = Event::new("call", "success");
        e.detail = Some(format!("{i:0>200}"));
        last = Some(r.record(e).unwrap());
    }
    assert!(r.stored_blocking(last.unwrap(), Duration::from_secs(30)));
    r.record(Event::new("call", "success")).unwrap();
    // While it runs: at most the active segment and the one before it.
    let bytes: u64 = ["a", "b"]
        .iter()
        .filter_map(|x| std::fs::metadata(d.join(format!("audit.db.journal.{x}"))).ok())
        .map(|m| m.len())
        .sum();
    assert!(bytes <= 2 * journal::SEGMENT_BYTES + (1 << 20), "journal holds {bytes} bytes");
    r.close();
}

/// CI finding (a PostgreSQL trail killed under load): a kill between a checkpoint's write to the
/// log and its append to the checkpoint file left the file without it; the restart's own
/// checkpoints then went past it, and the verifier took the gap for an edited file. The restart
/// says how many records followed the file's last checkpoint (`inherited_unsigned`): a
/// checkpoint among them is the kill's, noted, not a problem. One cut from the middle of the
/// file, before any such record, still is.
#[test]
fn a_checkpoint_a_kill_kept_from_the_file_is_covered_by_the_restart() {
    let d = dir("kill-between");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 250, 100);
    let cpf = checkpoint_path(&log);
    let all = lines(&cpf);
    // The kill: the last checkpoint (the close) reached the log, not the file.
    put_lines(&cpf, &all[..all.len() - 1]);
    write_log(&log, 5, 100);
    let recs = lines(&log);
    assert!(recs.iter().any(|r| r.contains("\"inherited_unsigned\"")), "the restart says so");
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(r.notes.iter().any(|n| n.contains("restart")), "{:?}", r.notes);
    // A line cut from the middle of the file is still found.
    let mut cut = lines(&cpf);
    cut.remove(0);
    put_lines(&cpf, &cut);
    assert!(problems(&log, &key).iter().any(|m| m.contains("missing from the checkpoint file")));

    // The same with a periodic checkpoint, as under load: the log ends at it, the file before it.
    let d = dir("kill-between-periodic");
    let log = d.join("audit.jsonl");
    let key = write_chunks(&log, &[150, 150], 100);
    let cpf = checkpoint_path(&log);
    let recs = lines(&log);
    let periodic = (recs.iter().enumerate().skip(1))
        .find(|(_, l)| l.contains("\"checkpoint\":{") && !l.contains("\"phase\""))
        .map(|(i, _)| i)
        .expect("a periodic checkpoint");
    put_lines(&log, &recs[..=periodic]);
    let at: serde_json::Value = serde_json::from_str(&recs[periodic]).unwrap();
    let kept: Vec<String> = (lines(&cpf).into_iter())
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64() < at["seq"].as_u64())
        .collect();
    put_lines(&cpf, &kept);
    write_log(&log, 5, 100);
    let r = verify_file(&log, &key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);

    // Two checkpoints missing before a restart: a kill keeps only the last from the file, so
    // the earlier one was cut from it.
    let d = dir("kill-between-two");
    let log = d.join("audit.jsonl");
    let key = write_chunks(&log, &[150, 150, 150], 100);
    let cpf = checkpoint_path(&log);
    let recs = lines(&log);
    let periodic: Vec<usize> = (recs.iter().enumerate().skip(1))
        .filter(|(_, l)| l.contains("\"checkpoint\":{") && !l.contains("\"phase\""))
        .map(|(i, _)| i)
        .collect();
    assert!(periodic.len() >= 2, "two periodic checkpoints");
    put_lines(&log, &recs[..=periodic[1]]);
    let first: serde_json::Value = serde_json::from_str(&recs[periodic[0]]).unwrap();
    let kept: Vec<String> = (lines(&cpf).into_iter())
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64() < first["seq"].as_u64())
        .collect();
    put_lines(&cpf, &kept);
    write_log(&log, 5, 100);
    let p = problems(&log, &key);
    let seq = first["seq"].as_u64().unwrap();
    assert!(p.iter().any(|m| m.contains(&format!("seq {seq}: the log's checkpoint is missing"))), "{p:?}");
}

/// Review finding on the fix above: a record appended after a clean stop that claims to be a
/// restart's word (`inherited_unsigned` covering the close) while the file holds that close is
/// someone else's; so is a second one, or anything but a start after it.
#[test]
fn a_forged_restart_word_after_a_clean_stop_is_found() {
    let d = dir("forged-inherited");
    let log = d.join("audit.jsonl");
    let key = write_log(&log, 5, 1000);
    let mut l = lines(&log);
    let forge = |l: &mut Vec<String>, n: u64| {
        let last: serde_json::Value = serde_json::from_str(l.last().unwrap()).unwrap();
        let seq = last["seq"].as_u64().unwrap() + 1;
        let mut f = serde_json::json!({"chain": "main", "kind": "audit", "status": "success",
            "detail": "inherited_unsigned", "count": n, "ts": last["ts"], "seq": seq, "prev": last["hash"]});
        f["hash"] = event::expected_hash(&f).into();
        l.push(warden_policy::canonical::to_string(&f));
    };
    forge(&mut l, 1);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("but the file holds it")), "{p:?}");
    forge(&mut l, 2);
    put_lines(&log, &l);
    let p = problems(&log, &key);
    assert!(p.iter().any(|m| m.contains("after the clean stop")), "{p:?}");
}
