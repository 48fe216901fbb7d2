//! Issue 24: a file trail in segments — rotation under load loses and duplicates nothing and
//! verifies across segments; retention removes old segments and the trail verifies from its
//! signed anchor; a segment removed by hand is found.

use super::*;
use crate::segments::{Policy, Retention, Rotation};
use crate::signing::SigningKey;
use std::time::Duration;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("warden-audit-seg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write `n` call events to the trail at `log` under `policy` from 4 threads at once; the key's
/// public half.
fn write(log: &Path, n: usize, policy: Option<Policy>) -> String {
    let kf = log.with_extension("key");
    let key = SigningKey::load(&kf).or_else(|_| SigningKey::generate(&kf)).unwrap();
    let public = key.public_key();
    let settings = Settings {
        chain: "main".into(),
        capacity: 100_000,
        on_full: OnFull::Reject,
        max_batch: 64,
        group_commit: Duration::ZERO,
        checkpoint_every: 500,
        checkpoint_interval: Duration::from_secs(60),
        checkpoint_file: Some(checkpoint_path(log)),
        spools: Vec::new(),
        journal: None,
        journal_acks: false,
        segments: policy,
    };
    let r = Recorder::start(settings, open_sink(&Store::File(log.into()), Fsync::Never).unwrap(), Some(key)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let r = r.clone();
            s.spawn(move || {
                let mut last = None;
                for i in (t..n).step_by(4) {
                    let mut e = Event::new("call", "success");
                    e.name = Some("echo".into());
                    e.request_id = Some(i.to_string());
                    e.args = Some(serde_json::json!({"text": "x".repeat(200)}));
                    last = Some(r.record(e).unwrap());
                }
                if let Some(t) = last {
                    assert!(r.stored_blocking(t, Duration::from_secs(30)));
                }
            });
        }
    });
    r.close();
    public
}

fn verify_trail(log: &Path, key: &str) -> verify::Report {
    verify(&Store::File(log.into()), &[checkpoint_path(log)], verify::Expect::new(Some(key), 500, 60)).unwrap()
}

/// The request ids of every call record of the trail, in order.
fn calls(log: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    scan_all(&Store::File(log.into()), None, |s| {
        let e: Event = serde_json::from_str(&s.line).unwrap();
        if e.kind == "call" {
            out.push(e.request_id.unwrap().parse().unwrap());
        }
        true
    })
    .unwrap();
    out
}

/// The seq of the trail's first record.
fn calls_from(log: &Path) -> u64 {
    let mut first = 0;
    scan_all(&Store::File(log.into()), None, |s| {
        first = serde_json::from_str::<Event>(&s.line).unwrap().seq;
        false
    })
    .unwrap();
    first
}

fn rotate_every(log: &Path, bytes: u64) -> Policy {
    Policy {
        active: log.into(),
        rotation: Rotation { max_bytes: Some(bytes), max_age: None },
        retention: Retention::default(),
    }
}

#[test]
fn rotation_under_load_loses_and_duplicates_nothing_and_verifies_across_segments() {
    for name in ["audit.jsonl", "audit.db"] {
        let d = dir(&format!("rotate-{name}"));
        let log = d.join(name);
        let key = write(&log, 3000, Some(rotate_every(&log, 128 << 10)));
        let segs = segments::segments(&log).unwrap();
        assert!(segs.len() >= 4, "{name}: {} segments", segs.len());
        // Each at least the size asked for (a SQLite database's pages counted wherever they
        // are: its write-ahead log keeps some beside it).
        for (_, p) in &segs {
            assert!(segments::bytes(p) >= 128 << 10, "{name}: {} is {} bytes", p.display(), segments::bytes(p));
        }
        let mut ids = calls(&log);
        assert_eq!(ids.len(), 3000, "{name}: every call once");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3000, "{name}: no duplicate");
        let r = verify_trail(&log, &key);
        assert!(r.ok(), "{name}: {:?}", r.problems);
        // Every segment ends with a signed checkpoint: its last record.
        for (_, s) in &segs {
            let (seq, _) = segments::last_of(s, "main").unwrap().unwrap();
            let mut last = None;
            scan(&Store::File(s.clone()), 0, None, |st| {
                last = Some(serde_json::from_str::<Event>(&st.line).unwrap());
                true
            })
            .unwrap();
            let last = last.unwrap();
            assert_eq!((last.seq, last.checkpoint.map(|c| c.phase)), (seq, Some(Some("rotate".into()))), "{name}");
        }
        // Removing a segment by hand (not the oldest): a gap.
        std::fs::remove_file(&segs[1].1).unwrap();
        let r = verify_trail(&log, &key);
        assert!(r.problems.iter().any(|p| p.contains("jumps from seq")), "{name}: {:?}", r.problems);
        // Removing the oldest by hand: the chain starts late, and no anchor explains it.
        std::fs::remove_file(&segs[0].1).unwrap();
        let r = verify_trail(&log, &key);
        assert!(
            r.problems.iter().any(|p| p.contains("instead of 1: the records before it were deleted")),
            "{name}: {:?}",
            r.problems
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn retention_removes_old_segments_and_the_trail_verifies_from_its_anchor() {
    for name in ["audit.jsonl", "audit.db"] {
        let d = dir(&format!("retain-{name}"));
        let log = d.join(name);
        let mut policy = rotate_every(&log, 64 << 10);
        policy.retention = Retention { keep_age: None, keep_bytes: Some(256 << 10), archive: None };
        let key = write(&log, 4000, Some(policy.clone()));
        let segs = segments::segments(&log).unwrap();
        assert!(segs.first().is_some_and(|(n, _)| *n > 1), "{name}: the oldest segments are gone: {segs:?}");
        let total: u64 = segs.iter().map(|(_, p)| segments::bytes(p)).sum::<u64>() + segments::bytes(&log);
        assert!(total <= (256 << 10) + (80 << 10), "{name}: {total} bytes kept");
        let r = verify_trail(&log, &key);
        assert!(r.ok(), "{name}: a trail cut by policy verifies: {:?}", r.problems);
        assert!(r.notes.iter().any(|n| n.contains("removed by the retention policy")), "{name}: {:?}", r.notes);
        // Every anchor says where the cut is; the removal is itself a record.
        let mut anchors = 0;
        scan_all(&Store::File(log.clone()), None, |s| {
            anchors += usize::from(serde_json::from_str::<Event>(&s.line).unwrap().anchor.is_some());
            true
        })
        .unwrap();
        assert!(anchors >= 1, "{name}");
        // The checkpoint file is as long as what is kept: nothing of it below the first record.
        let first = calls_from(&log);
        let text = std::fs::read_to_string(checkpoint_path(&log)).unwrap();
        let lowest = text.lines().map(|l| serde_json::from_str::<Event>(l).unwrap().seq).min().unwrap();
        assert!(lowest > first, "{name}: checkpoint at seq {lowest}, the trail starts at {first}");
        // A restart continues the chain and the policy; still verifies.
        write(&log, 500, Some(policy));
        assert!(verify_trail(&log, &key).ok(), "{name}");
        // Removing the oldest remaining segment by hand is not the policy's doing: found.
        let oldest = segments::segments(&log).unwrap().remove(0).1;
        std::fs::remove_file(oldest).unwrap();
        let r = verify_trail(&log, &key);
        assert_eq!(r.problems.len(), 1, "{name}: one problem, where: {:?}", r.problems);
        assert!(r.problems[0].contains("the records before it were deleted"), "{name}: {:?}", r.problems);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Issue 24: `warden audit export` of a time range, across segments, verifies on its own (its
/// end is signed); an edit in the export is found; read as a whole trail it starts too late.
#[test]
fn an_exported_range_verifies_alone_and_edits_in_it_are_found() {
    let d = dir("export");
    let log = d.join("audit.db");
    let key = write(&log, 2000, Some(rotate_every(&log, 128 << 10)));
    let mut times = Vec::new();
    scan_all(&Store::File(log.clone()), None, |s| {
        times.push(serde_json::from_str::<Event>(&s.line).unwrap().ts);
        true
    })
    .unwrap();
    // Times are nearly in seq order (stamped as queued, from 4 threads): quartiles of the
    // sorted times, so the range holds a quarter of the records whatever the interleaving.
    times.sort();
    let (since, until) = (times[times.len() / 4].clone(), times[times.len() / 2].clone());
    assert!(since < until);
    let mut lines = Vec::new();
    let done = export(&Store::File(log.clone()), Some(&since), Some(&until), |l| {
        lines.push(l.to_string());
        Ok(())
    })
    .unwrap();
    let x = done["main"];
    assert!(x.first > 1 && x.records as usize == lines.len() && x.records > 400, "{x:?}");
    let out = d.join("export.jsonl");
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    let last: Event = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert!(last.checkpoint.is_some(), "the export ends signed");
    let check = |exported: bool| {
        let e = verify::Expect { exported, ..verify::Expect::new(Some(&key), 500, 60) };
        verify(&Store::File(out.clone()), &[], e).unwrap()
    };
    let r = check(true);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.chains["main"].signed_through, x.last);
    assert!(!check(false).ok(), "as a whole trail it starts late and has no checkpoint file");
    let mut edited = lines.clone();
    let i = edited.iter().position(|l| l.contains("\"echo\"")).expect("a call in the export");
    edited[i] = edited[i].replace("\"echo\"", "\"rm\"");
    std::fs::write(&out, edited.join("\n") + "\n").unwrap();
    assert!(check(true).problems.iter().any(|p| p.contains("edited")));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Issue 24: segments past the policy are archived (zstd) instead of removed: the live trail
/// verifies from its anchor, and with the archive the whole trail verifies from seq 1.
#[test]
fn archived_segments_verify_with_the_live_trail_from_the_first_record() {
    for name in ["audit.jsonl", "audit.db"] {
        let d = dir(&format!("archive-{name}"));
        let log = d.join(name);
        let archive = d.join("archive");
        let mut policy = rotate_every(&log, 64 << 10);
        policy.retention = Retention { keep_age: None, keep_bytes: Some(256 << 10), archive: Some(archive.clone()) };
        let key = write(&log, 3000, Some(policy));
        let packed: Vec<_> = std::fs::read_dir(&archive).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!packed.is_empty(), "{name}");
        let packed_bytes: u64 =
            std::fs::read_dir(&archive).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
        let expect = || verify::Expect::new(Some(&key), 500, 60);
        let live = verify(&Store::File(log.clone()), &[checkpoint_path(&log)], expect()).unwrap();
        assert!(live.ok(), "{name}: {:?}", live.problems);
        let whole =
            verify_archived(&Store::File(log.clone()), Some(&archive), &[checkpoint_path(&log)], expect()).unwrap();
        let listing = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        assert!(whole.ok(), "{name}: {:?}\narchive {:?}\nlive {:?}", whole.problems, listing(&archive), listing(&d));
        assert!(!whole.notes.iter().any(|n| n.contains("retention")), "{name}: from seq 1: {:?}", whole.notes);
        assert!(whole.records > live.records);
        println!("{name}: {} segments archived in {packed_bytes} bytes", packed.len());
        // An export reaches into the archive: from seq 1, and it verifies alone.
        let exported = d.join("export.jsonl");
        let mut text = String::new();
        let done = export_archived(&Store::File(log.clone()), Some(&archive), None, None, |l| {
            text.push_str(l);
            text.push('\n');
            Ok(())
        })
        .unwrap();
        assert_eq!(done["main"].first, 1, "{name}");
        let live_only = export(&Store::File(log.clone()), None, None, |_| Ok(())).unwrap();
        assert!(live_only["main"].first > 1, "{name}");
        std::fs::write(&exported, text).unwrap();
        let mut alone = expect();
        alone.exported = true;
        let r = verify(&Store::File(exported.clone()), &[], alone).unwrap();
        assert!(r.ok() && r.records == whole.records, "{name}: {:?} {} of {}", r.problems, r.records, whole.records);
        std::fs::remove_file(&exported).unwrap();
        // Review finding M1: with the archive read, an archived segment removed is found.
        let oldest = segments::archived(&log, &archive).unwrap().remove(0).1;
        std::fs::remove_file(oldest).unwrap();
        let cut =
            verify_archived(&Store::File(log.clone()), Some(&archive), &[checkpoint_path(&log)], expect()).unwrap();
        // (How it is put depends on whether a removal ended exactly there: an anchor then exists.)
        let found =
            |p: &String| p.contains("the archive does not hold") || p.contains("the records before it were deleted");
        assert!(cut.problems.iter().any(found), "{name}: {:?}", cut.problems);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Review finding H2: a Warden stopped right after a rotation (its fresh active file empty, or
/// not yet made) continues the chain from its newest segment on restart, not from seq 1.
#[test]
fn a_restart_after_a_rotation_continues_the_chain_from_the_newest_segment() {
    for name in ["audit.jsonl", "audit.db"] {
        let d = dir(&format!("restart-{name}"));
        let log = d.join(name);
        let policy = rotate_every(&log, 64 << 10);
        let key = write(&log, 1000, Some(policy.clone()));
        // The state a kill leaves right after the rename.
        let n = segments::next_number(&log, None).unwrap();
        std::fs::rename(&log, segments::segment_path(&log, n)).unwrap();
        write(&log, 10, Some(policy));
        let mut first = None;
        scan(&Store::File(log.clone()), 0, None, |s| {
            first = Some(serde_json::from_str::<Event>(&s.line).unwrap().seq);
            false
        })
        .unwrap();
        assert!(first.is_some_and(|s| s > 1000), "{name}: continues, {first:?}");
        let r = verify_trail(&log, &key);
        assert!(r.ok(), "{name}: {:?}", r.problems);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Review finding H1: a file planted (or a segment renamed) to sort first does not get Warden
/// to sign a cut: what retention would remove must be the chain's own oldest history, re-hashed
/// and continued by the first kept file; otherwise nothing is removed.
#[test]
fn planted_or_renamed_segments_do_not_get_a_cut_signed() {
    let d = dir("planted");
    let log = d.join("audit.jsonl");
    let key = write(&log, 3000, Some(rotate_every(&log, 64 << 10)));
    let segs = segments::segments(&log).unwrap();
    assert!(segs.len() >= 6, "{segs:?}");
    // A line claiming a cut point in segment 4, planted to sort first.
    let mid = segments::last_of(&segs[3].1, "main").unwrap().unwrap();
    let planted = segments::segment_path(&log, 0);
    std::fs::write(&planted, format!("{{\"chain\":\"main\",\"seq\":{},\"hash\":\"{}\"}}\n", mid.0, mid.1)).unwrap();
    let mut policy = rotate_every(&log, 64 << 10);
    policy.retention = Retention { keep_age: None, keep_bytes: Some(1), archive: None };
    write(&log, 10, Some(policy.clone()));
    assert!(planted.exists(), "refused: nothing removed");
    assert!(segs.iter().all(|(_, p)| p.exists()), "no real segment removed either");
    // A real later segment renamed to sort first: refused too.
    std::fs::remove_file(&planted).unwrap();
    std::fs::rename(&segs[4].1, &planted).unwrap();
    write(&log, 10, Some(policy));
    assert!(planted.exists() && segs[0].1.exists(), "refused: nothing removed");
    let mut anchors = 0;
    scan_all(&Store::File(log.clone()), None, |s| {
        anchors += usize::from(serde_json::from_str::<Event>(&s.line).unwrap().anchor.is_some());
        true
    })
    .unwrap();
    assert_eq!(anchors, 0, "no anchor was signed");
    let _ = key;
    std::fs::remove_dir_all(&d).unwrap();
}

/// Review finding M5: following the trail (`tail -f`) across rotations loses and repeats
/// nothing, whatever the new file's size against the old cursor.
#[test]
fn following_across_rotations_loses_and_repeats_nothing() {
    for name in ["audit.jsonl", "audit.db"] {
        let d = dir(&format!("follow-{name}"));
        let log = d.join(name);
        let policy = rotate_every(&log, 64 << 10);
        write(&log, 300, Some(policy.clone()));
        let store = Store::File(log.clone());
        let mut seen: Vec<u64> = Vec::new();
        let mut at = Following::default();
        scan(&store, 0, None, |s| {
            at.first = Some(s.line.clone());
            false
        })
        .unwrap();
        let mut take = |s: &sink::Stored| {
            seen.push(serde_json::from_str::<Event>(&s.line).unwrap().seq);
            true
        };
        at.cursor = scan_all(&store, None, &mut take).unwrap();
        for _ in 0..3 {
            write(&log, 700, Some(policy.clone()));
            follow(&store, &mut at, &mut take).unwrap();
        }
        let n = seen.len();
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{name}: in order, none missed or repeated");
        assert_eq!(seen[0], 1, "{name}");
        assert!(n > 2400, "{name}: {n}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// A removal cut short after its mark was written (a crash before the files went): the next
/// removal still starts where the one before it stopped, and finishes the job.
#[test]
fn a_removal_cut_short_after_its_mark_is_finished_by_the_next() {
    let d = dir("mark-crash");
    let log = d.join("audit.jsonl");
    let mut policy = rotate_every(&log, 64 << 10);
    policy.retention = Retention { keep_age: None, keep_bytes: Some(256 << 10), archive: None };
    let key = write(&log, 3000, Some(policy.clone()));
    let oldest = segments::segments(&log).unwrap().remove(0).1;
    // The mark of a removal of the oldest segment, written, its files not yet removed.
    let (through, hash) = segments::last_of(&oldest, "main").unwrap().unwrap();
    let signing = SigningKey::load(&log.with_extension("key")).unwrap();
    retain::write_mark(&log, "main", &signing, through, &hash).unwrap();
    write(&log, 1000, Some(policy));
    assert!(!oldest.exists(), "removed at the next removal");
    let r = verify_trail(&log, &key);
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(retain::read_marks(&log, "main", &signing).len() as u64, {
        let n = std::fs::read_to_string(retain::mark_path(&log)).unwrap().lines().count();
        n as u64
    });
    std::fs::remove_dir_all(&d).unwrap();
}

/// A segment whose archiving failed stays live, and so do the ones after it: the next
/// retention takes them up again from there. (Archiving the later ones would leave a live
/// segment whose successor is gone, and every later removal refused.)
#[test]
fn a_segment_that_could_not_be_archived_is_archived_later_with_those_after_it() {
    let d = dir("archive-fails");
    let log = d.join("audit.jsonl");
    let archive = d.join("archive");
    let mut policy = rotate_every(&log, 64 << 10);
    policy.retention = Retention { keep_age: None, keep_bytes: Some(256 << 10), archive: Some(archive.clone()) };
    let key = write(&log, 3000, Some(policy.clone()));
    // The oldest live segment cannot be archived: a file of its name is in the way.
    let oldest = segments::segments(&log).unwrap().remove(0).1;
    let blocker = archive.join(format!("{}.zst", oldest.file_name().unwrap().to_string_lossy()));
    std::fs::write(&blocker, b"not this segment").unwrap();
    write(&log, 3000, Some(policy.clone()));
    assert!(oldest.exists(), "not archived over another file");
    std::fs::remove_file(&blocker).unwrap();
    write(&log, 1000, Some(policy));
    assert!(!oldest.exists(), "archived once the way is clear");
    let whole = verify_archived(
        &Store::File(log.clone()),
        Some(&archive),
        &[checkpoint_path(&log)],
        verify::Expect::new(Some(&key), 500, 60),
    )
    .unwrap();
    assert!(whole.ok(), "{:?}", whole.problems);
    std::fs::remove_dir_all(&d).unwrap();
}
