//! The pure decision core: no I/O. Today it holds the [`Principal`] that authentication produces
//! and every later stage reads, and the address rules for outbound requests to URLs that others
//! chose; rules, guards, detectors and redactors join it with their issues.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod limits;
pub mod net;
pub mod principal;
pub mod rules;

pub use principal::{AuthMethod, Principal};
