//! Schema compilation and validation on any JSON (first half the schema, second the
//! arguments): never panics, never resolves anything outside the document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::schema::{ArgSchema, Overlay};

fuzz_target!(|data: &[u8]| {
    let mid = data.len() / 2;
    let (Ok(schema), Ok(args)) =
        (serde_json::from_slice::<serde_json::Value>(&data[..mid]), serde_json::from_slice(&data[mid..]))
    else {
        return;
    };
    let overlay = Overlay { strict: true, max_length: Some(100), max_items: Some(10), arguments: vec![] };
    if let Ok(s) = ArgSchema::compile(&schema, &overlay) {
        let _ = s.validate(&args);
    }
});
