//! Test support: the fixture MCP server (`warden-fixture`), which implements every tool,
//! resource and prompt the official conformance suite's server scenarios expect, plus
//! misbehaving tools for hostile-upstream tests (`crash`, `hang`, `garbage`, `slow`).
#![forbid(unsafe_code)]

pub mod fixture;
pub mod harness;
pub mod idp;
pub mod pki;
