//! Resource URI normalization on any text: never panics, is idempotent, and what it returns
//! holds no dot segment, no doubled slash in the path and no encoded separator.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::uri::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(n) = normalize(text) else { return };
    assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent: {text:?} -> {n:?}");
    let path = n.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    assert!(!path.split('/').any(|s| s == ".." || s == "."), "dot segment left in {n:?}");
    let lower = path.to_ascii_lowercase();
    assert!(!lower.contains("%2f") && !lower.contains("%2e"), "encoded separator or dot left in {n:?}");
});
