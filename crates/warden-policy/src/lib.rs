//! The pure decision core: the [`Principal`] that authentication produces, authorization rules,
//! limits, address rules, and the content-security stages: argument schemas and guards, the
//! tool-definition scan, the output sanitizer, injection detector and redactor. No network I/O;
//! the one filesystem read is [`guards::path_resolved`], named as such.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod guards;
pub mod inject;
pub mod limits;
pub mod net;
pub mod principal;
pub mod redact;
pub mod rules;
pub mod sanitize;
pub mod scan;
pub mod schema;

pub use principal::{AuthMethod, Principal};
