//! Every argument guard on any text: never panics; an accepted path is inside its root,
//! component by component, with no `..`; an accepted argv value has no shell metacharacter; an
//! accepted path segment has no separator, escape or dot segment;
//! the SQL and URL guards, whatever they decide, decide without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::{Component, PathBuf};
use warden_policy::guards::{self, SqlPolicy, UrlPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let roots = [PathBuf::from("/data/allowed")];
    if let Ok(p) = guards::path(text, &roots) {
        assert!(p.starts_with("/data/allowed"), "{text:?} accepted as {p:?}");
        assert!(!p.components().any(|c| c == Component::ParentDir), "{p:?}");
    }
    if guards::argv(text).is_ok() {
        assert!(!text.starts_with('-') && !text.contains(['\n', '\0', ';', '|', '&', '`', '$']), "{text:?}");
    }
    if guards::segment(text).is_ok() {
        assert!(!text.is_empty() && text != "." && text != ".." && !text.contains(['/', '\\', '%', '?', '#']), "{text:?}");
    }
    for dialect in ["generic", "sqlite", "postgres"] {
        let policy = SqlPolicy { dialect: dialect.into(), tables: vec!["items".into()], ..Default::default() };
        let _ = guards::sql(text, &policy);
    }
    let _ = guards::url(text, &UrlPolicy::default());
    let _ = guards::text(text, 0.5);
});
