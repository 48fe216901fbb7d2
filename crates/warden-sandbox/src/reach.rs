//! What a sandboxed server may read, and why one that dies at start probably died: the paths
//! the Landlock layer grants (one list, shared with the helper), the server's own arguments that
//! fall outside them or are closed to the unprivileged user it runs as, and the paths its
//! stderr says it was refused. Used by `warden scan` and by upstream connects to turn "initialize
//! failed" into "the sandbox refused to read X: add it to `read_only`".
//!
//! This is advice, not enforcement: the helper applies the real rules. It looks only at
//! arguments that name existing paths and at stderr lines that say `EACCES`/`Permission denied`
//! with a path, so a server that reads a file named nowhere on its command line and says nothing
//! precise gets no advice.

use crate::{program_prefixes, Policy, SYSTEM_PATHS, SYSTEM_RW_PATHS};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The paths Landlock grants to `program` under `policy`: (read and execute, read and write).
pub fn granted(policy: &Policy, program: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut ro: Vec<PathBuf> = Vec::new();
    let mut rw: Vec<PathBuf> = policy.read_write.clone();
    if policy.system_paths {
        ro.extend(SYSTEM_PATHS.iter().map(PathBuf::from));
        rw.extend(SYSTEM_RW_PATHS.iter().map(PathBuf::from));
    }
    ro.extend(program_prefixes(program));
    ro.extend(policy.read_only.iter().cloned());
    (ro, rw)
}

/// Why the sandboxed server cannot read a path it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Beneath no path Landlock grants.
    Outside(PathBuf),
    /// Granted, but the unprivileged user the server runs as (Warden is root) may not read it:
    /// `closed` is the first directory or file on the way that others may not enter or read.
    Permissions { path: PathBuf, closed: PathBuf },
    /// The server itself said so on stderr (EACCES on this path).
    Refused(PathBuf),
}

impl Blocked {
    pub fn path(&self) -> &Path {
        match self {
            Blocked::Outside(p) | Blocked::Permissions { path: p, .. } | Blocked::Refused(p) => p,
        }
    }

    /// One sentence: what was refused and what to change; `add` says how to declare a
    /// directory readable (the config key, a command-line flag).
    pub fn advice(&self, add: &dyn Fn(&Path) -> String) -> String {
        let dir = |p: &Path| if p.is_dir() { p.to_path_buf() } else { p.parent().unwrap_or(p).to_path_buf() };
        // What to add — never a system or credential directory, whatever the server asked for.
        let add = |p: &Path| {
            let d = dir(p);
            if sensitive(&d) {
                format!(
                    "nothing: {} is a system, home, shared or credential directory; keep the server out of it",
                    d.display()
                )
            } else {
                add(&d)
            }
        };
        match self {
            Blocked::Outside(p) => format!(
                "the sandbox does not let the server read {} (outside every readable path): add {}",
                p.display(),
                add(p)
            ),
            Blocked::Permissions { path, closed } => format!(
                "the server runs as an unprivileged user (Warden is root), which may not read {} ({} is closed to \
                 other users): set [upstream.sandbox] user to its owner, or open the permissions",
                path.display(),
                closed.display()
            ),
            Blocked::Refused(p) => format!(
                "the server says it was refused {} (EACCES; its own claim): if it needs it, add {}",
                p.display(),
                add(p)
            ),
        }
    }
}

/// A directory no advice should grant: system configuration, one that the install-prefix grant
/// refuses too (the root, a shared top-level directory, a home directory, one that holds
/// credentials: `crate::prefix::too_wide`), or anything beneath a directory of secrets.
fn sensitive(d: &Path) -> bool {
    d.starts_with("/etc")
        || d.starts_with("/proc")
        || d.starts_with("/sys")
        || crate::prefix::too_wide(d)
        || d.components().any(|c| c.as_os_str().to_str().is_some_and(|n| crate::prefix::SECRET_DIRS.contains(&n)))
}

/// Arguments of `program` that name existing paths the sandboxed server will not be able to
/// read. Relative paths are taken from `cwd` (the server's working directory: its configured
/// one, else Warden's). `--opt=/path` counts too.
pub fn blocked_arguments(policy: &Policy, program: &str, args: &[String], cwd: &Path) -> Vec<Blocked> {
    let grants = canonical_grants(policy, program);
    let as_nobody = nix::unistd::geteuid().is_root() && policy.user.is_none();
    let mut out = Vec::new();
    let candidates = std::iter::once(program).chain(args.iter().flat_map(|a| {
        let value = a.split_once('=').map(|(_, v)| v);
        std::iter::once(a.as_str()).chain(value)
    }));
    for c in candidates.filter(|c| !c.is_empty() && !c.starts_with('-') && (c.contains('/') || c.starts_with('.'))) {
        let named = cwd.join(c);
        let Ok(real) = std::fs::canonicalize(&named) else { continue };
        if out.iter().any(|b: &Blocked| b.path() == real) {
            continue;
        }
        if !grants.iter().any(|g| real.starts_with(g)) {
            out.push(Blocked::Outside(real));
        } else if as_nobody {
            if let Some(closed) = closed_to_others(&real) {
                out.push(Blocked::Permissions { path: real, closed });
            }
        }
    }
    out
}

/// Which of `files` (keys and secrets) a server sandboxed under `policy`, running `program`,
/// could read (issue 20 finding 14): beneath a path Landlock grants it (its install prefix,
/// `cwd`, `read_only`, `read_write`, the system paths) and, when it runs as the unprivileged
/// user (Warden is root and no `user` is set), open to other users on the way. A file that does
/// not exist yet counts by where it will be (Warden creates keys 0600, so as the unprivileged
/// user only an existing, open file is exposed).
pub fn exposed(policy: &Policy, program: &str, files: &[PathBuf]) -> Vec<PathBuf> {
    let grants = canonical_grants(policy, program);
    // Warden root: the server runs as another user and group (the helper's own choice), whose
    // permission bits decide; else as Warden's user, who can read Warden's keys.
    let ids = nix::unistd::geteuid().is_root().then(|| crate::ids::sandbox_ids(policy).ok()).flatten();
    let mut out = Vec::new();
    for f in files {
        let real = resolve_existing_prefix(f);
        if !grants.iter().any(|g| real.starts_with(g)) {
            continue;
        }
        if let Some((uid, gid)) = ids {
            if !real.exists() || !readable_by(&real, uid.as_raw(), gid.as_raw()) {
                continue;
            }
        }
        if !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

/// Whether `uid`/`gid` (no other groups: the helper drops them) may read `p`: every directory on
/// the way entered (`x`) and the file read (`r`), by the owner, group or other bits that apply.
fn readable_by(p: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allows = |q: &Path, bit: u32| {
        let Ok(m) = std::fs::metadata(q) else { return false };
        let mode = m.mode();
        let shift = if m.uid() == uid {
            6
        } else if m.gid() == gid {
            3
        } else {
            0
        };
        (mode >> shift) & bit == bit
    };
    p.ancestors().skip(1).all(|d| allows(d, 0o1)) && allows(p, if p.is_dir() { 0o5 } else { 0o4 })
}

/// `p` with its longest existing ancestor canonicalized (symlinks resolved) and the rest as
/// written.
fn resolve_existing_prefix(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    for a in abs.ancestors() {
        if let Ok(real) = std::fs::canonicalize(a) {
            let rest = abs.strip_prefix(a).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() { real } else { real.join(rest) };
        }
    }
    abs
}

/// The first directory on the way to `p` that others may not enter, or `p` itself when others
/// may not read it (directories: read and enter).
fn closed_to_others(p: &Path) -> Option<PathBuf> {
    let mode = |q: &Path| std::fs::metadata(q).map(|m| m.permissions().mode()).unwrap_or(0);
    for dir in p.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
        if mode(dir) & 0o001 == 0 {
            return Some(dir.to_path_buf());
        }
    }
    let need = if p.is_dir() { 0o005 } else { 0o004 };
    (mode(p) & need != need).then(|| p.to_path_buf())
}

/// What the server's last stderr lines point at, at most 8: a path it names that exists but
/// lies outside every grant (seen through a symlink, as `node_modules` often is), or a path it
/// says it was refused (`EACCES`, `Permission denied`, `[Errno 13]`).
pub fn blocked_in_stderr<'a>(policy: &Policy, program: &str, lines: impl IntoIterator<Item = &'a str>) -> Vec<Blocked> {
    let grants = canonical_grants(policy, program);
    let mut out: Vec<Blocked> = Vec::new();
    for line in lines {
        let l = line.to_ascii_lowercase();
        let refused = l.contains("eacces") || l.contains("permission denied") || l.contains("errno 13");
        let outside = |real: PathBuf| (!grants.iter().any(|g| real.starts_with(g))).then_some(Blocked::Outside(real));
        for p in paths_in(line) {
            let found = match std::fs::canonicalize(&p) {
                Ok(real) => outside(real),
                // Named beneath a grant but missing: does a symlink on the way lead out?
                Err(_) if grants.iter().any(|g| p.starts_with(g)) => {
                    p.ancestors().skip(1).find_map(|a| std::fs::canonicalize(a).ok()).and_then(outside)
                }
                Err(_) => None,
            };
            let found = found.or_else(|| refused.then(|| Blocked::Refused(p.clone())));
            if let Some(b) = found.filter(|b| !out.iter().any(|o| o.path() == b.path())) {
                if out.len() == 8 {
                    return out;
                }
                out.push(b);
            }
        }
    }
    out
}

fn canonical_grants(policy: &Policy, program: &str) -> Vec<PathBuf> {
    let (ro, rw) = granted(policy, Path::new(program));
    ro.iter().chain(&rw).map(|p| std::fs::canonicalize(p).unwrap_or(p.clone())).collect()
}

/// The absolute paths in a line: quoted (`'…'`, `"…"`), and bare words starting with `/`.
fn paths_in(line: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    // A segment right after a quote that starts with `/` runs to the closing quote (an
    // apostrophe elsewhere, as in "can't", only shifts which segments those are).
    for q in ['\'', '"'] {
        out.extend(line.split(q).skip(1).filter(|s| s.len() > 1 && s.starts_with('/')).map(PathBuf::from));
    }
    let bare = line
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '\'' | '"'))
        .map(|w| w.trim_end_matches([':', '.', ')']))
        .filter(|w| w.len() > 1 && w.starts_with('/'))
        .map(PathBuf::from);
    for p in bare {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20 finding 14: a key beside a server's own program (its install prefix) or in
    /// its `cwd` is exposed; one elsewhere is not.
    #[test]
    fn secrets_beneath_a_grant_are_exposed() {
        let d = std::env::temp_dir().join(format!("warden-exposed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("app")).unwrap();
        std::fs::create_dir_all(d.join("keys")).unwrap();
        let program = d.join("app/server.py");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let (beside, apart, future) = (d.join("app/audit.key"), d.join("keys/audit.key"), d.join("app/data/as.pk8"));
        for f in [&beside, &apart] {
            std::fs::write(f, "k").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let policy = Policy::default();
        let files = [beside.clone(), apart.clone(), future.clone()];
        let got = exposed(&policy, program.to_str().unwrap(), &files);
        assert!(got.contains(&std::fs::canonicalize(&beside).unwrap()), "{got:?}");
        assert!(!got.iter().any(|p| p.ends_with("keys/audit.key")), "{got:?}");
        let root = nix::unistd::geteuid().is_root();
        // Not created yet: exposed unless the server runs as another user than Warden's.
        assert_eq!(got.iter().any(|p| p.ends_with("app/data/as.pk8")), !root, "{got:?}");
        // Granted through `read_only` (a cwd is granted the same way) too.
        let policy = Policy { read_only: vec![d.join("keys")], ..Policy::default() };
        assert!(!exposed(&policy, "/bin/true", &files).is_empty());
        if root {
            // Closed to other users: the unprivileged server cannot read it.
            std::fs::set_permissions(&apart, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(exposed(&policy, "/bin/true", std::slice::from_ref(&apart)).is_empty());
            // … unless its group is the server's (review finding: only the other bits were read).
            let (_, gid) = crate::ids::sandbox_ids(&policy).unwrap();
            std::os::unix::fs::chown(&apart, None, Some(gid.as_raw())).unwrap();
            std::fs::set_permissions(&apart, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert_eq!(exposed(&policy, "/bin/true", std::slice::from_ref(&apart)).len(), 1);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stderr_of_common_runtimes_names_the_refused_path() {
        let lines = [
            "node:internal/fs/utils:356",
            "Error: EACCES: permission denied, open '/home/ann/proj/config.json'",
            "python3: can't open file '/home/ann/srv/server.py': [Errno 13] Permission denied",
            "PermissionError: [Errno 13] Permission denied: '/home/ann/.cache/x'",
            "open /home/ann/data.db: permission denied",
            "thread 'main' panicked: Os { code: 13, kind: PermissionDenied }",
            "Error: EACCES: permission denied, open '/home/ann/proj/config.json'",
            "Error: Cannot find module '/no/such/module.js'",
        ];
        let refused: Vec<PathBuf> = blocked_in_stderr(&Policy::default(), "/usr/bin/env", lines)
            .iter()
            .map(|b| b.path().to_path_buf())
            .collect();
        assert_eq!(
            refused,
            ["/home/ann/proj/config.json", "/home/ann/srv/server.py", "/home/ann/.cache/x", "/home/ann/data.db"]
                .map(PathBuf::from)
        );
    }

    /// Advice never grants a system or credential directory, whatever the server claims.
    #[test]
    fn advice_never_grants_credential_directories() {
        let add = |d: &Path| format!("read_only {}", d.display());
        for p in ["/etc/shadow", "/home/ann/.ssh/id_rsa", "/root/.aws/credentials", "/home/ann/notes.txt"] {
            let a = Blocked::Refused(PathBuf::from(p)).advice(&add);
            assert!(a.contains("add nothing") && a.contains("its own claim"), "{a}");
        }
        let a = Blocked::Refused(PathBuf::from("/srv/app/data.json")).advice(&add);
        assert!(a.ends_with("add read_only /srv/app"), "{a}");
        // the directories the install-prefix grant refuses, advice refuses too
        for p in ["/home/ann/.config/settings.json", "/home/ann/.local/token", "/tmp/x.json", "/server.js"] {
            let a = Blocked::Refused(PathBuf::from(p)).advice(&add);
            assert!(a.contains("add nothing"), "{a}");
        }
        let a = Blocked::Refused(PathBuf::from("/home/ann/.config/app/settings.json")).advice(&add);
        assert!(a.ends_with("add read_only /home/ann/.config/app"), "{a}");
    }

    /// A path the server names that exists but resolves outside the grants (a symlinked
    /// `node_modules`) is named, with where it resolves to.
    #[test]
    fn a_named_path_outside_the_grants_is_named() {
        let dir = std::env::temp_dir().join(format!("warden-reach-link-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real/pkg")).unwrap();
        std::fs::write(dir.join("real/pkg/index.js"), "").unwrap();
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let _ = std::os::unix::fs::symlink(dir.join("real"), dir.join("app/node_modules"));
        let p = Policy { read_only: vec![dir.join("app")], ..Default::default() };
        let line = format!("Error: Cannot find module '{}/app/node_modules/pkg/index.js'", dir.display());
        let found = blocked_in_stderr(&p, "/usr/bin/env", [line.as_str()]);
        let real = std::fs::canonicalize(dir.join("real/pkg/index.js")).unwrap();
        assert_eq!(found, vec![Blocked::Outside(real)]);
        // Node names the import as written, which need not exist: the symlink on the way counts.
        let line = format!("Cannot find module '{}/app/node_modules/pkg/server/mcp.js' imported", dir.display());
        let found = blocked_in_stderr(&p, "/usr/bin/env", [line.as_str()]);
        assert_eq!(found, vec![Blocked::Outside(std::fs::canonicalize(dir.join("real/pkg")).unwrap())]);
        // A missing path outside every grant is no lead.
        assert!(blocked_in_stderr(&p, "/usr/bin/env", ["Cannot find module '/nonexistent/x.js'"]).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn arguments_outside_the_grants_are_named() {
        let dir = std::env::temp_dir().join(format!("warden-reach-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("srv")).unwrap();
        std::fs::write(dir.join("srv/server.js"), "").unwrap();
        let script = dir.join("srv/server.js").display().to_string();
        let p = Policy::default();
        let blocked = blocked_arguments(&p, "/usr/bin/env", &["-y".into(), script.clone(), "--x=./srv".into()], &dir);
        let real = |s: &str| std::fs::canonicalize(dir.join(s)).unwrap();
        assert_eq!(blocked, vec![Blocked::Outside(real("srv/server.js")), Blocked::Outside(real("srv"))]);
        let p = Policy { read_only: vec![dir.clone()], ..Default::default() };
        let left = blocked_arguments(&p, "/usr/bin/env", &[script], &dir);
        assert!(left.iter().all(|b| matches!(b, Blocked::Permissions { .. })), "{left:?}");
        assert!(blocked_arguments(&p, "/usr/bin/env", &["/etc/passwd".into(), "no/such/file".into()], &dir).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
