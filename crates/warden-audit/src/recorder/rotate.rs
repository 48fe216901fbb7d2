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
        let big = p.rotation.max_bytes.is_some_and(|max| crate::segments::bytes(&p.active) >= max);
        let old = p.rotation.max_age.is_some_and(|age| self.segment_started.elapsed().is_ok_and(|e| e >= age));
        if !(big || old) {
            return;
        }
        let active = p.active.clone();
        self.checkpoint(Some("rotate"));
        let to = match crate::segments::next_number(&active) {
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

    /// Remove the segments the retention policy no longer keeps: first a signed anchor record
    /// saying which, and the last seq and hash of this chain in them, then the files.
    pub(super) fn apply_retention(&mut self) {
        let Some(p) = self.s.segments.clone().filter(|p| p.retention.is_set()) else { return };
        let gone = match crate::segments::expired(&p.active, &p.retention, SystemTime::now()) {
            Ok(g) if !g.is_empty() => g,
            Ok(_) => return,
            Err(e) => return tracing::error!(error = %e, "audit retention: cannot list the segments"),
        };
        let newest = &gone.last().expect("not empty").1;
        let last = match crate::segments::last_of(newest, &self.s.chain) {
            Ok(l) => l,
            Err(e) => {
                return tracing::error!(error = %e, segment = %newest.display(), "audit retention: cannot read the segment; nothing removed")
            }
        };
        let names: Vec<String> = gone
            .iter()
            .map(|(_, f)| f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .collect();
        if let Some((through, hash)) = last {
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
            e.count = Some(gone.len() as u64);
            e.anchor = Some(crate::event::Anchor { hash, removed: names.clone(), through, why });
            let sealed = self.seal(SystemTime::now(), e, None);
            self.write(std::slice::from_ref(&sealed));
            self.since_checkpoint += 1;
            // Signed before any file goes: the verifier trusts only a signed anchor.
            self.checkpoint(None);
        }
        for (_, f) in &gone {
            let done = match &p.retention.archive {
                Some(dir) => crate::segments::archive(f, dir).map(drop),
                None => std::fs::remove_file(f).map_err(|e| e.to_string()),
            };
            if let Err(e) = done {
                tracing::error!(error = %e, segment = %f.display(), "audit retention: the segment stays (tried again at the next rotation)");
            }
        }
        let whither =
            p.retention.archive.as_ref().map_or("removed".to_string(), |d| format!("archived to {}", d.display()));
        tracing::info!(chain = %self.s.chain, segments = ?names, "audit retention: old segments {whither}");
    }
}
