//! The injection detector, the redactor and the error scrubber on any text: never panic, and
//! a redacted text contains no value the redactor reported finding in its own output.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::{inject, redact};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let v = inject::scan(text);
    assert!((0.0..=1.0).contains(&v.score));
    assert!(v.findings.iter().all(|f| f.at <= text.len()));
    let r = redact::Redactor::default();
    let mut found = Vec::new();
    let out = r.redact(text, &mut found);
    let mut again = Vec::new();
    let twice = r.redact(&out, &mut again);
    assert_eq!(twice, out, "redaction is not stable on {text:?}");
    let _ = redact::scrub_error(text);
});
