//! The supply chain of stdio upstreams: the program Warden runs is the one the operator pinned
//! (`sha256`), checked before every spawn; and package launchers (`npx`, `uvx`, …) that would
//! run whatever version a registry serves at that moment are named by `warden check`.
//!
//! Defends against: a server binary or script replaced on disk (an update, a compromised
//! package cache, a tampered install) being started silently — a changed program is refused,
//! logged and audited; and unpinned launchers going unnoticed.
//! Does not defend against: a swap between the check and the `exec` by someone who can write
//! the program (the digest is of the file as read just before the spawn); what an interpreter
//! loads besides its entry file (pin the interpreter, and pin packages by version); a launcher
//! with a pinned version whose registry serves a different package under it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The start of the error for a program whose digest is not the pinned one (the gateway audits
/// connect failures that start with it).
pub const CHANGED: &str = "program digest mismatch";

/// The program a command names for Warden itself: a path (with a `/`), else the first match on
/// Warden's `PATH`.
pub fn resolve(command: &str) -> Option<PathBuf> {
    resolve_for(command, std::env::var_os("PATH").as_deref(), None)
}

/// The program a command names for a child started in `cwd` with `path` as its `PATH`: the
/// absolute path the child would run (so that the file hashed is the file executed).
pub fn resolve_for(command: &str, path: Option<&std::ffi::OsStr>, cwd: Option<&Path>) -> Option<PathBuf> {
    let base = match cwd {
        Some(d) => std::path::absolute(d).ok()?,
        None => std::env::current_dir().ok()?,
    };
    if command.contains('/') {
        return Some(base.join(command));
    }
    std::env::split_paths(path?).map(|d| base.join(d).join(command)).find(|c| c.is_file())
}

/// What identifies one version of a file on disk without reading it: a replaced or rewritten
/// file changes at least one of these.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

/// Digests already computed, by file stamp (a program is hashed again only when it changed).
static SEEN: Mutex<Option<HashMap<Stamp, String>>> = Mutex::new(None);
/// Larger programs are not hashed (and so cannot be pinned).
const MAX_PROGRAM_BYTES: u64 = 1 << 30;

/// The SHA-256 (hex) of the file at `path`.
pub fn digest(path: &Path) -> Result<String, String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let stamp = Stamp {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime: md.mtime(),
        mtime_ns: md.mtime_nsec(),
        ctime: md.ctime(),
        ctime_ns: md.ctime_nsec(),
    };
    if let Some(d) = SEEN.lock().as_ref().and_then(|m| m.get(&stamp)) {
        return Ok(d.clone());
    }
    if md.size() > MAX_PROGRAM_BYTES {
        return Err(format!("{}: larger than 1 GiB; not hashed", path.display()));
    }
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let d = crate::digest::hex(ctx.finish().as_ref());
    let mut seen = SEEN.lock();
    let m = seen.get_or_insert_with(HashMap::new);
    if m.len() >= 1024 {
        m.clear();
    }
    m.insert(stamp, d.clone());
    Ok(d)
}

/// Refuse to run `command` unless its program's digest is `want`; the absolute path to run
/// (the one hashed) otherwise. `path` and `cwd` are the child's.
pub fn verify(
    command: &str,
    want: &str,
    path: Option<&std::ffi::OsStr>,
    cwd: Option<&Path>,
) -> Result<PathBuf, String> {
    let program = resolve_for(command, path, cwd).ok_or_else(|| format!("{CHANGED}: {command}: not found"))?;
    let have = digest(&program).map_err(|e| format!("{CHANGED}: {e}"))?;
    if have.eq_ignore_ascii_case(want) {
        Ok(program)
    } else {
        Err(format!("{CHANGED}: {} is sha256 {have}, pinned {want}; not started", program.display()))
    }
}

/// Launchers that fetch and run a package by name.
const LAUNCHERS: &[&str] = &["npx", "bunx", "uvx", "pipx", "pnpm", "yarn", "deno"];

/// Why `command args` runs an unpinned package, if it does: a launcher whose package argument
/// carries no version (`pkg@1.2.3` for npm-style launchers, `pkg==1.2.3` or `pkg@1.2.3` for
/// Python ones).
pub fn unpinned_launcher(command: &str, args: &[String]) -> Option<String> {
    let name = Path::new(command).file_name()?.to_str()?;
    if !LAUNCHERS.contains(&name) {
        return None;
    }
    // skip the launcher's own options and subcommands (`pnpm dlx`, `pipx run`, `yarn dlx`)
    let pkg = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .find(|a| !matches!(*a, "dlx" | "run" | "exec" | "x"))?;
    let pinned = match name {
        "uvx" | "pipx" => {
            pkg.contains("==") || pkg.rsplit_once('@').is_some_and(|(n, v)| !n.is_empty() && has_digit(v))
        }
        "deno" => pkg.rsplit_once('@').is_some_and(|(n, v)| !n.is_empty() && !n.ends_with(':') && has_digit(v)),
        // npm: `@scope/name@1.2.3` or `name@1.2.3`; a leading `@` is the scope, not a version
        _ => pkg
            .trim_start_matches('@')
            .rsplit_once('@')
            .is_some_and(|(_, v)| has_digit(v) && !v.contains('^') && !v.contains('~')),
    };
    (!pinned).then(|| {
        format!("`{name} {pkg}` runs whatever version the registry serves when it starts: pin a version, and `sha256` the program")
    })
}

fn has_digit(v: &str) -> bool {
    v.chars().next().is_some_and(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn launchers_without_a_version_are_named() {
        for (cmd, a) in [
            ("npx", &["-y", "@modelcontextprotocol/server-everything"][..]),
            ("/usr/bin/npx", &["server-filesystem", "/data"]),
            ("npx", &["-y", "pkg@latest"]),
            ("npx", &["pkg@^1.2.0"]),
            ("uvx", &["mcp-server-git"]),
            ("pipx", &["run", "mcp-server-fetch"]),
            ("pnpm", &["dlx", "@scope/server"]),
        ] {
            assert!(unpinned_launcher(cmd, &args(a)).is_some(), "{cmd} {a:?}");
        }
        for (cmd, a) in [
            ("npx", &["-y", "@modelcontextprotocol/server-everything@2026.8.31"][..]),
            ("npx", &["server-filesystem@1.0.0", "/data"]),
            ("uvx", &["mcp-server-git==0.6.2"]),
            ("uvx", &["mcp-server-git@0.6.2"]),
            ("node", &["server.js"]),
            ("/usr/bin/python3", &["-m", "server"]),
        ] {
            assert_eq!(unpinned_launcher(cmd, &args(a)), None, "{cmd} {a:?}");
        }
    }

    #[test]
    fn a_changed_program_is_refused() {
        let dir = std::env::temp_dir().join(format!("warden-program-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("server.sh");
        std::fs::write(&p, "#!/bin/sh\necho one\n").unwrap();
        let want = digest(&p).unwrap();
        assert_eq!(verify(p.to_str().unwrap(), &want, None, None), Ok(p.clone()));
        // The child's own PATH and working directory decide which file that is.
        let dirs = std::ffi::OsString::from(dir.as_os_str());
        assert_eq!(verify("server.sh", &want, Some(&dirs), None), Ok(p.clone()));
        assert_eq!(verify("./server.sh", &want, None, Some(&dir)), Ok(dir.join("./server.sh")));
        // Replaced (a new inode, as package managers and attackers do) and rewritten in place.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "#!/bin/sh\necho two\n").unwrap();
        let e = verify(p.to_str().unwrap(), &want, None, None).unwrap_err();
        assert!(e.starts_with(CHANGED), "{e}");
        assert!(verify("no-such-program-anywhere", &want, None, None).unwrap_err().starts_with(CHANGED));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
