//! The JSON-RPC parser on any bytes: never panics, and what it accepts re-serializes to
//! something it accepts again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_protocol::jsonrpc::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data, 64) {
        let again = Message::parse(m.to_json().as_bytes(), 64);
        assert!(again.is_ok(), "re-serialized message does not parse: {:?}", m.to_json());
    }
});
