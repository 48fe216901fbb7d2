//! The sanitizer on any text: never panics, leaves nothing it strips, and is idempotent
//! (its output is already clean).
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::sanitize::{is_invisible, sanitize};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (clean, _) = sanitize(text);
    assert!(!clean.chars().any(is_invisible), "invisible character left in {clean:?}");
    assert!(!clean.contains("<!--"), "comment opener left in {clean:?}");
    let (again, removed) = sanitize(&clean);
    assert!(!removed.any() && again == clean, "not idempotent: {clean:?} -> {again:?}");
});
