//! The writer's side of a file trail in segments (`crate::segments`): rotating the active file
//! when it is due, and applying the retention policy after a signed anchor.

use super::Writer;
use crate::event::Event;
use std::time::{Duration, Instant, SystemTime};

impl Writer {
    /// Rotate the active file into a segment when it is due (its size or age), its last record a
    /// signed checkpoint, then apply the retention policy.
    pub(super) fn rotate_if_due(&mut self) {
        let Some(p) = &self.s.segments else { return };
        if self.rotation_failed.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        let written = self.sink.written_bytes().unwrap_or_else(|| crate::segments::bytes(&p.active));
        let big = p.rotation.max_bytes.is_some_and(|max| written >= max);
        let old = p.rotation.max_age.is_some_and(|age| self.segment_started.elapsed().is_ok_and(|e| e >= age));
        if !(big || old) {
            return;
        }
        let (active, archive) = (p.active.clone(), p.retention.archive.clone());
        self.checkpoint(Some("rotate"));
        let to = match crate::segments::next_number(&active, archive.as_deref()) {
            Ok(n) => crate::segments::segment_path(&active, n),
            Err(e) => return self.rotation_error(e),
        };
        match self.sink.rotate(&to) {
            Ok(()) => {
                tracing::info!(chain = %self.s.chain, seq = self.seq, segment = %to.display(), "audit trail rotated");
                self.segment_started = SystemTime::now();
                self.rotation_failed = None;
                self.apply_retention();
            }
            Err(e) => self.rotation_error(e),
        }
    }

    fn rotation_error(&mut self, e: String) {
        tracing::error!(error = %e, "audit trail rotation failed; the active file keeps growing (tried again in a minute)");
        self.rotation_failed = Some(Instant::now());
    }

    /// Remove the segments the retention policy no longer keeps, once they are shown to be the
    /// oldest history of this chain (`retain.rs`): first a signed anchor record saying which,
    /// and a signed mark of where the removal stopped, then the files. Refused (nothing removed,
    /// an error) when they are not, or without a signing key.
    pub(super) fn apply_retention(&mut self) {
        let Some(p) = self.s.segments.clone().filter(|p| p.retention.is_set()) else { return };
        let gone = match crate::segments::expired(&p.active, &p.retention, SystemTime::now()) {
            Ok(g) if !g.is_empty() => g,
            Ok(_) => return,
            Err(e) => return tracing::error!(error = %e, "audit retention: cannot list the segments"),
        };
        let Some(key) = &self.key else {
            return tracing::error!("audit retention: no signing key to sign what is removed; nothing removed");
        };
        let files: Vec<std::path::PathBuf> = gone.iter().map(|(_, f)| f.clone()).collect();
        let kept = crate::segments::segments(&p.active)
            .ok()
            .and_then(|all| all.into_iter().find(|(n, _)| *n > gone.last().expect("not empty").0))
            .map_or(p.active.clone(), |(_, f)| f);
        let marks = crate::retain::read_marks(&p.active, &self.s.chain, key);
        let (through, hash) = match crate::retain::check(&self.s.chain, &files, &kept, &marks) {
            Ok(last) => last,
            Err(e) => {
                return tracing::error!(error = %e,
                    "audit retention refused: the oldest segments are not the chain's history as this Warden wrote it (files planted, renamed or removed by hand?); nothing removed — run warden audit verify")
            }
        };
        let names: Vec<String> =
            files.iter().map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
        let why = match (&p.retention.keep_age, &p.retention.keep_bytes) {
            (Some(a), Some(b)) => format!("keep {} and at most {b} bytes", humantime::format_duration(*a)),
            (Some(a), None) => format!("keep {}", humantime::format_duration(*a)),
            (None, Some(b)) => format!("keep at most {b} bytes"),
            (None, None) => String::new(),
        };
        let why = match &p.retention.archive {
            Some(dir) => format!("{why}; archived to {}", dir.display()),
            None => why,
        };
        let mut e = Event::new("audit", "success");
        e.detail = Some("retention".into());
        e.count = Some(files.len() as u64);
        e.anchor = Some(crate::event::Anchor { chain: None, hash: hash.clone(), removed: names.clone(), through, why });
        let sealed = self.seal(SystemTime::now(), e, None);
        self.write(std::slice::from_ref(&sealed));
        self.since_checkpoint += 1;
        // Signed before any file goes: the verifier trusts only a signed anchor.
        self.checkpoint(None);
        let key = self.key.as_ref().expect("checked above");
        if let Err(e) = crate::retain::write_mark(&p.active, &self.s.chain, key, through, &hash) {
            return tracing::error!(error = %e, "audit retention: cannot write the retention mark; nothing removed");
        }
        let mut all = true;
        for f in &files {
            let done = match &p.retention.archive {
                Some(dir) => crate::segments::archive(f, dir).map(drop),
                None => std::fs::remove_file(f).map_err(|e| e.to_string()),
            };
            if let Err(e) = done {
                // The later ones stay too: the next removal starts again from this one (its
                // first record follows a mark still kept, and the kept files continue them).
                tracing::error!(error = %e, segment = %f.display(), "audit retention: the segment and those after it stay (tried again at the next rotation)");
                all = false;
                break;
            }
        }
        if let (true, Some(cp)) = (all, &self.s.checkpoint_file) {
            if let Err(e) = crate::retain::prune_checkpoints(cp, &self.s.chain, through) {
                tracing::error!(error = %e, "audit retention: the checkpoint file keeps its older lines");
            }
        }
        let whither =
            p.retention.archive.as_ref().map_or("removed".to_string(), |d| format!("archived to {}", d.display()));
        tracing::info!(chain = %self.s.chain, segments = ?names, "audit retention: old segments {whither}");
    }
}
