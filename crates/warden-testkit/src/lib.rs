//! Test support: the fixture MCP server (`warden-fixture`), which implements every tool,
//! resource and prompt the official conformance suite's server scenarios expect, plus
//! misbehaving tools for hostile-upstream tests (`crash`, `hang`, `garbage`, `slow`), and the
//! deliberately vulnerable server of the CVE regression suite (`warden-vulnerable`).
#![forbid(unsafe_code)]

pub mod fixture;
pub mod harness;
pub mod idp;
pub mod pki;
pub mod raw;
pub mod serve;
pub mod tasks;
pub mod vulnerable;
