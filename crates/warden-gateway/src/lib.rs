//! The gateway: listener, sessions, upstream connections, federation and the call pipeline.
#![forbid(unsafe_code)]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod blocking;
pub mod caller;
pub mod client_requests;
pub mod clock;
pub mod config;
pub mod connections;
pub mod content;
pub mod control;
pub mod digest;
pub mod dns;
pub mod error;
pub mod failures;
pub mod forward;
pub mod framing;
pub mod gateway;
pub mod host;
pub mod killswitch;
pub mod listener;
pub mod metrics;
pub mod namespace;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod relay;
pub mod rpc;
pub mod server;
pub use warden_audit::signing;
pub mod store;
pub mod tls;
pub mod trace;
pub mod upstream;
