//! The CVE regression suite: one test per published MCP vulnerability class that a gateway can
//! stop. Each test reproduces the attack, first directly against a deliberately vulnerable
//! upstream (`warden-vulnerable`, or a hostile server built in the test) to show that the attack
//! is real, then through Warden, and asserts that Warden refuses it before the upstream sees it
//! and that the refusal is in the audit trail. The README's table lists each CVE, what Warden
//! does, and the test.

mod common;
mod definitions;
mod filesystem;
mod git;
mod oauth;
mod rebinding;
mod sessions;
mod sql;
mod ssrf;
