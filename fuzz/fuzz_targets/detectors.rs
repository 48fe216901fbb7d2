//! The injection detector, the redactor and the error scrubber on any text: never panic, a
//! redacted text contains no value the redactor reported finding in its own output, and the
//! redactor (for every class, the secrets and the PII classes) and the injection detector find
//! exactly what their whole-text reference searches find.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::{inject, redact};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let v = inject::scan(text);
    assert!((0.0..=1.0).contains(&v.score));
    assert!(v.findings.iter().all(|f| f.at <= text.len()));
    assert_eq!(v, inject::reference::scan(text), "injection verdict differs from the reference on {text:?}");
    let r = redact::Redactor::default();
    let mut found = Vec::new();
    let out = r.redact(text, &mut found);
    let mut again = Vec::new();
    let twice = r.redact(&out, &mut again);
    assert_eq!(twice, out, "redaction is not stable on {text:?}");
    let all: Vec<redact::Class> = redact::Class::SECRETS.iter().chain(redact::Class::PII).copied().collect();
    for classes in [&all[..], redact::Class::SECRETS, redact::Class::PII] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let new = redact::Redactor::new(classes).redact(text, &mut a);
        let old = redact::reference::redact(classes, text, &mut b);
        assert_eq!((new, a), (old, b), "redaction differs from the reference on {text:?}");
    }
    let _ = redact::scrub_error(text);
});
