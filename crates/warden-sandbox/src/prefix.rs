//! What of a program's installation the sandbox lets it read: its install prefix, narrowed so
//! that the grant never takes in a home directory, the root, a shared top-level directory or a
//! directory that holds credentials.
//!
//! An interpreter installed as `<prefix>/bin/python3` needs `<prefix>/lib`, so the parent of a
//! `bin` directory is granted. For `~/bin/x` that parent is the whole home directory (SSH keys,
//! `.env` files, browser profiles), and for `~/.cargo/bin/x` it is `~/.cargo`, which holds
//! `credentials.toml`. Such a parent is not granted: the program gets its own directory, and a
//! program that sits directly in one of these directories gets only its own file.
//!
//! Does not defend against an install prefix that holds secrets under a name not listed here
//! (`/opt/app` with a key file in it): the grant is read-only, and declared paths are the
//! operator's choice.

use std::path::{Path, PathBuf};

/// Directories that hold credentials among other things: never granted as a whole.
pub(crate) const CREDENTIAL_HOLDERS: &[&str] = &[
    ".cargo",
    ".config",
    ".local",
    ".ssh",
    ".aws",
    ".gnupg",
    ".docker",
    ".kube",
    ".azure",
    ".password-store",
    "gcloud",
];

/// Directories whose every file is a secret: nothing beneath them is advised as a grant.
pub(crate) const SECRET_DIRS: &[&str] =
    &[".ssh", ".gnupg", ".aws", ".kube", ".docker", ".cargo", ".azure", ".password-store", "gcloud"];

/// Top-level directories that are the system's own install roots (granted as system paths).
const SYSTEM_TOP_LEVEL: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Whether granting all of `d` would grant far more than one program: the root, a top-level
/// directory other than the system's own (`/home`, `/opt`, `/tmp`, `/etc` …), a home directory
/// or a directory that contains one (`$HOME`, `/root`, `/home/*`, a directory that is its owner's
/// home, the home of any login user; compared as named and through symlinks, so a home reached
/// by another path counts too), or a directory that holds credentials ([`CREDENTIAL_HOLDERS`]:
/// `~/.cargo`, `~/.config` …).
pub(crate) fn too_wide(d: &Path) -> bool {
    let Some(parent) = d.parent() else { return true };
    if parent == Path::new("/") && !SYSTEM_TOP_LEVEL.iter().any(|s| d == Path::new(s)) {
        return true;
    }
    let named = |d: &Path| d.file_name().and_then(|n| n.to_str()).is_some_and(|n| CREDENTIAL_HOLDERS.contains(&n));
    if named(d) || is_home(d) {
        return true;
    }
    let real = std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
    named(&real) || is_home(&real) || homes().iter().any(|h| h.starts_with(&real) || h.starts_with(d))
}

/// `$HOME`, `/root`, `/home/<name>`, or a directory that is its owner's home directory.
fn is_home(d: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if d == Path::new("/root") || d.parent() == Some(Path::new("/home")) {
        return true;
    }
    if std::env::var_os("HOME").is_some_and(|h| !h.is_empty() && Path::new(&h) == d) {
        return true;
    }
    let Ok(meta) = std::fs::metadata(d) else { return false };
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid())).ok().flatten().is_some_and(|u| u.dir == d)
}

/// The home directories of people on this machine, resolved through symlinks: `$HOME`, root's,
/// and those of login users in `/etc/passwd` (uid 1000 and up, but `nobody`). System accounts'
/// homes (`/usr/sbin`, `/var/lib/…`) are not people's and are left out.
fn homes() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = vec![PathBuf::from("/root")];
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(h));
    }
    for line in std::fs::read_to_string("/etc/passwd").unwrap_or_default().lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let (Some(uid), Some(dir)) = (f.get(2).and_then(|u| u.parse::<u32>().ok()), f.get(5)) {
            if (1000..65534).contains(&uid) && dir.starts_with('/') && *dir != "/" {
                out.push(PathBuf::from(dir));
            }
        }
    }
    let real: Vec<PathBuf> = out.iter().filter_map(|h| std::fs::canonicalize(h).ok()).collect();
    out.extend(real);
    out
}

/// The install prefix of a program: the directory holding it, or that directory's parent when it
/// is a `bin` directory (so an interpreter finds its `lib`). Both the path as named and as
/// resolved through symlinks count (a virtualenv's `python` links to the base install). A
/// parent that is [too wide](too_wide) is not granted (its `bin` directory is), and a program
/// directly in such a directory gets only its own file.
pub fn program_prefixes(program: &Path) -> Vec<PathBuf> {
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.is_file()))
    };
    let mut out = Vec::new();
    let Some(found) = found else { return out };
    let found = std::path::absolute(&found).unwrap_or(found);
    for p in [Some(found.clone()), std::fs::canonicalize(&found).ok()].into_iter().flatten() {
        let prefix = prefix_of(&p);
        if !out.contains(&prefix) {
            out.push(prefix);
        }
    }
    out
}

fn prefix_of(file: &Path) -> PathBuf {
    let Some(dir) = file.parent().filter(|d| !too_wide(d)) else { return file.to_path_buf() };
    match (dir.file_name(), dir.parent()) {
        (Some(n), Some(parent)) if n == "bin" && !too_wide(parent) => parent.to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(p: &str) -> PathBuf {
        program_prefixes(Path::new(p)).remove(0)
    }

    #[test]
    fn prefix_of_a_bin_directory_is_its_parent() {
        assert_eq!(first("/opt/py/bin/python3"), PathBuf::from("/opt/py"));
        assert_eq!(first("/srv/app/server"), PathBuf::from("/srv/app"));
        // /usr/bin/x: the prefix is /usr
        assert_eq!(first("/usr/bin/env"), PathBuf::from("/usr"));
        // /bin/x stays /bin, never /
        assert_eq!(first("/bin/sh"), PathBuf::from("/bin"));
        // a toolchain manager's install is its own prefix
        assert_eq!(
            first("/home/ann/.nvm/versions/node/v20/bin/node"),
            PathBuf::from("/home/ann/.nvm/versions/node/v20")
        );
        assert_eq!(first("/home/ann/proj/.venv/bin/python"), PathBuf::from("/home/ann/proj/.venv"));
    }

    /// Finding 9: `~/bin/x` granted the whole home directory, `~/.cargo/bin/x` all of `~/.cargo`
    /// (with `credentials.toml`), and a program directly in `/` or a home directory its parent.
    #[test]
    fn a_prefix_is_never_a_home_root_or_credential_directory() {
        for (program, want) in [
            ("/home/ann/bin/server", "/home/ann/bin"),
            ("/root/bin/server", "/root/bin"),
            ("/home/ann/.cargo/bin/mcp-server", "/home/ann/.cargo/bin"),
            ("/root/.cargo/bin/mcp-server", "/root/.cargo/bin"),
            ("/home/ann/.local/bin/server", "/home/ann/.local/bin"),
            ("/home/ann/.config/bin/server", "/home/ann/.config/bin"),
            ("/opt/bin/server", "/opt/bin"),
            // directly in a directory too wide to grant: only the file
            ("/home/ann/server", "/home/ann/server"),
            ("/root/server", "/root/server"),
            ("/home/ann/.cargo/server", "/home/ann/.cargo/server"),
            ("/home/ann/.ssh/server", "/home/ann/.ssh/server"),
            ("/server", "/server"),
            ("/tmp/server", "/tmp/server"),
            ("/opt/server", "/opt/server"),
        ] {
            assert_eq!(program_prefixes(Path::new(program)), vec![PathBuf::from(want)], "{program}");
        }
        for d in ["/", "/home", "/home/ann", "/root", "/home/ann/.cargo", "/home/ann/.config", "/tmp", "/etc"] {
            assert!(too_wide(Path::new(d)), "{d}");
        }
        for d in ["/usr", "/bin", "/opt/py", "/home/ann/.cargo/bin", "/home/ann/.nvm/versions/node/v20"] {
            assert!(!too_wide(Path::new(d)), "{d}");
        }
    }

    /// `$HOME` as the environment names it, and a credential directory reached through a
    /// symlink named otherwise.
    #[test]
    fn the_home_directory_in_the_environment_and_through_a_symlink() {
        if let Some(home) = std::env::var_os("HOME").filter(|h| Path::new(h).is_dir() && Path::new(h) != Path::new("/"))
        {
            assert_eq!(first(&Path::new(&home).join("bin/x").display().to_string()), Path::new(&home).join("bin"));
        }
        let dir = std::env::temp_dir().join(format!("warden-prefix-{}", std::process::id()));
        let holder = dir.join(".cargo");
        std::fs::create_dir_all(holder.join("bin")).unwrap();
        std::fs::write(holder.join("bin/tool"), "").unwrap();
        std::fs::create_dir_all(dir.join("app/bin")).unwrap();
        std::fs::write(dir.join("app/bin/tool"), "").unwrap();
        let alias = dir.join("alias");
        let _ = std::fs::remove_file(&alias);
        std::os::unix::fs::symlink(&holder, &alias).unwrap();
        let real = std::fs::canonicalize(&holder).unwrap();
        assert_eq!(program_prefixes(&alias.join("bin/tool")), vec![alias.join("bin"), real.join("bin")]);
        // A review found: a home reached through a symlink (`/home/ann` -> `/data/ann`) was
        // granted whole by its real path. HOME names the link here; the real path is refused too,
        // and so is a directory that contains a home.
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("ann/bin")).unwrap();
        std::fs::write(data.join("ann/bin/tool"), "").unwrap();
        let link = dir.join("home-ann");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(data.join("ann"), &link).unwrap();
        let saved = std::env::var_os("HOME");
        std::env::set_var("HOME", &link);
        let real_home = std::fs::canonicalize(&link).unwrap();
        let got = program_prefixes(&link.join("bin/tool"));
        assert!(too_wide(&real_home) && too_wide(real_home.parent().unwrap()), "{real_home:?}");
        match saved {
            Some(h) => std::env::set_var("HOME", h),
            None => std::env::remove_var("HOME"),
        }
        assert_eq!(got, vec![link.join("bin"), real_home.join("bin")]);
        assert_eq!(first(&dir.join("app/bin/tool").display().to_string()), dir.join("app"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
