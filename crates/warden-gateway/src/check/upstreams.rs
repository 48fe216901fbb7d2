//! Upstream by upstream: what isolates a stdio server on this machine (its sandbox, probed by
//! running the sandbox helper itself exactly as for the server, with `/bin/true` in the server's
//! place), the program it runs and its pin, and what a built-in upstream offers.
//!
//! A sandbox layer this machine cannot apply is named loudly. With `strict = true` it fails the
//! check (the server would not start); unset `strict` is warned about, because the loader's
//! default is best effort.

use super::{CheckLine, Findings, Step};
use crate::config::{Config, Transport, Upstream};
use std::path::PathBuf;

/// For each upstream, what isolates it (stdio: the sandbox on this machine) or what it offers
/// (builtin).
pub(super) fn describe(f: &mut Findings, cfg: &Config, helper: &Result<PathBuf, String>) -> Step {
    let support = warden_sandbox::Support::probe();
    for u in &cfg.upstreams {
        match u.transport {
            Transport::Stdio => {
                match u.sandbox.policy(u.cwd.as_deref()) {
                    Some(p) => {
                        f.push(CheckLine::ok(format!("upstream {}: sandbox: {}", u.name, support.describe(&p))));
                        layers(f, u, &p, helper)?;
                    }
                    None => {
                        f.push(CheckLine::ok(format!("upstream {}: sandbox: OFF (sandbox.enabled = false)", u.name)))
                    }
                }
                program(f, u)?;
            }
            Transport::Builtin => match crate::upstream::builtin::open(u) {
                Ok(b) => f.push(CheckLine::ok(format!("upstream {}: built-in tools: {}", u.name, b.describe()))),
                Err(e) => return f.fail([e]),
            },
            Transport::Http => f.push(CheckLine::ok(format!("upstream {}: remote Streamable HTTP", u.name))),
        }
    }
    Ok(())
}

/// The layers the helper applies of `p` on this machine, and a warning naming each one not in
/// force. With `strict`, a layer the helper cannot apply fails the check.
fn layers(f: &mut Findings, u: &Upstream, p: &warden_sandbox::Policy, helper: &Result<PathBuf, String>) -> Step {
    let helper = match helper {
        Ok(h) => h,
        Err(e) => return f.fail([e.clone()]),
    };
    match warden_sandbox::probe(helper, p) {
        Ok(r) => {
            f.push(CheckLine::ok(format!("upstream {}: sandbox on this machine: {}", u.name, r.summary())));
            let gaps: Vec<String> = r.gaps().iter().map(ToString::to_string).collect();
            if !gaps.is_empty() {
                f.push(CheckLine::loud(format!(
                    "upstream {}: sandbox layer(s) NOT in force: {}",
                    u.name,
                    gaps.join(", ")
                )));
            }
        }
        Err(e) if p.strict => {
            return f.fail([format!(
                "upstream {}: sandbox.strict, but this machine cannot apply every layer, so the server would not \
                 start: {e} (set strict = false to run it with the layers the machine has)",
                u.name
            )])
        }
        Err(e) => f.push(CheckLine::loud(format!("upstream {}: the sandbox could not be probed: {e}", u.name))),
    }
    if u.sandbox.strict.is_none() {
        f.push(CheckLine::warning(format!(
            "upstream {}: [upstream.sandbox] strict is not set, so a layer this machine cannot apply is \
             skipped (logged, listed in /readyz): set strict = true to refuse to start without every layer, or \
             strict = false to accept that",
            u.name
        )));
    }
    Ok(())
}

/// For a stdio upstream: the program it runs, its digest against the pin, and an unpinned
/// package launcher. A program that differs from its pin fails the check.
fn program(f: &mut Findings, u: &Upstream) -> Step {
    use crate::upstream::program;
    let cmd = u.command.as_deref().unwrap_or_default();
    match program::resolve(cmd).map(|p| (program::digest(&p), p)) {
        Some((Ok(d), path)) => {
            let pin = match &u.sha256 {
                Some(w) if w.eq_ignore_ascii_case(&d) => "pinned".to_string(),
                Some(w) => {
                    return f.fail([format!(
                        "upstream {}: {} is sha256 {d}, pinned {w}: it changed",
                        u.name,
                        path.display()
                    )])
                }
                None => format!("not pinned: add sha256 = \"{d}\""),
            };
            f.push(CheckLine::ok(format!("upstream {}: program {} ({pin})", u.name, path.display())));
        }
        Some((Err(e), _)) => f.push(CheckLine::plain_warning(format!("upstream {}: program: {e}", u.name))),
        None => f.push(CheckLine::plain_warning(format!("upstream {}: program {cmd:?} not found on PATH", u.name))),
    }
    if let Some(why) = program::unpinned_launcher(cmd, &u.args) {
        f.push(CheckLine::warning(format!("upstream {}: {why}", u.name)));
    }
    Ok(())
}
