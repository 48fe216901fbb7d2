//! Linux isolation of stdio upstreams.
//!
//! Warden does not restrict the child inside `pre_exec`. It starts its own binary again as a
//! small helper (`warden __sandbox <policy> -- <program> <args>`). The helper restricts itself
//! and then `exec`s the server, so every restriction is inherited by the server and everything
//! it starts. In order:
//!
//! 1. **namespaces**: a fresh PID namespace, so that ending the server ends every process it
//!    started, including ones that left its process group. With `network = "isolated"`, also a
//!    fresh network namespace with no usable interface. A non-root Warden enters a user
//!    namespace that maps only its own uid. The helper stays as the namespace's parent and
//!    passes on the exit status; the second stage, pid 1 inside, goes on with steps 2–6.
//! 2. **resource limits**: CPU seconds, address space, open files, processes, file size. Core
//!    dumps are always off, because they would carry the server's secrets to disk.
//! 3. **user**: when Warden runs as root, the server is dropped to an unprivileged user and
//!    group (`nobody` by default). Supplementary groups are cleared. If the user cannot be
//!    resolved, the server does not start.
//! 4. **`no_new_privs`**: setuid binaries and file capabilities grant nothing.
//! 5. **Landlock**: the filesystem is limited to system paths (read and execute), the
//!    program's own install prefix, the declared read-only and read-write paths, and
//!    `/proc/self`. With network `deny`, TCP bind and connect are refused too (ABI ≥ 4).
//!    Signals and abstract Unix sockets cannot leave the sandbox (ABI ≥ 6).
//! 6. **seccomp**: a deny list of what MCP servers never need: ptrace, process_vm_*, pidfds
//!    (`pidfd_open`, `pidfd_getfd`: another process's descriptors), process_madvise, kcmp, mount and
//!    the new mount API, namespaces (unshare, setns, namespace flags on clone; clone3 answers
//!    ENOSYS so libc falls back to clone), kexec, bpf, kernel modules, reboot, swap, the clock,
//!    keyrings, userfaultfd, perf_event_open, io_uring (which bypasses the socket rules),
//!    open_by_handle_at, and the x32 ABI. With network `deny` (the gateway's default), sockets
//!    of any family other than AF_UNIX are refused too.
//!
//! The gateway clears the environment before the helper starts: only the declared variables
//! and secrets reach the server. It puts the helper in its own process group and ends that
//! group on shutdown.
//!
//! Defends against a compromised or malicious local server. Such a server cannot read SSH
//! keys, `.env` files, `/etc/shadow`, or Warden's memory and environment. It cannot write
//! outside its declared paths, reach the network when that is denied, fork-bomb past its
//! process limit (which counts per uid), or escape through kernel interfaces on the deny list.
//!
//! Does not defend against:
//! - kernel bugs in the system calls that stay allowed;
//! - anything a declared read-write path permits;
//! - the network when it is allowed;
//! - CPU and memory exhaustion beyond what the rlimits bound (there are no cgroups);
//! - side channels.
//!
//! `unsafe` appears once, in the Landlock ABI probe (a bare system call).
//!
//! Each layer is applied best-effort on the running kernel and reported. With `strict`, a layer
//! that cannot be applied stops the server from starting.
#![deny(unsafe_code)]

mod helper;
mod reach;
mod seccomp;

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use helper::run_helper;
pub use reach::{blocked_arguments, blocked_in_stderr, granted, Blocked};

/// The argument that makes `warden` act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";
/// Prefix of the one stderr line the helper writes just before it runs the server.
pub const REPORT_PREFIX: &str = "warden-sandbox: ";

/// What the server may reach over the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No restriction.
    Allow,
    /// Only Unix sockets. seccomp refuses other socket families; Landlock refuses TCP.
    #[default]
    Deny,
    /// A fresh network namespace with no usable interface. If the kernel refuses one, this
    /// falls back to `deny`.
    Isolated,
}

/// Resource limits (`setrlimit`); `None` leaves the inherited limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_secs: Option<u64>,
    pub address_space_bytes: Option<u64>,
    pub open_files: Option<u64>,
    /// Processes and threads of the server's uid (the kernel counts per uid).
    pub processes: Option<u64>,
    pub file_size_bytes: Option<u64>,
}

impl Limits {
    /// Each limit by its config name (without units), with its value.
    pub fn entries(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("cpu_secs", self.cpu_secs),
            ("address_space_bytes", self.address_space_bytes),
            ("open_files", self.open_files),
            ("processes", self.processes),
            ("file_size_bytes", self.file_size_bytes),
        ]
    }

    /// `core=0` and every set limit as `name=value`.
    pub fn describe(&self) -> String {
        let mut parts = vec!["core=0".to_string()];
        parts.extend(self.entries().iter().filter_map(|(n, v)| v.map(|v| format!("{n}={v}"))));
        parts.join(" ")
    }
}

/// One upstream's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Paths readable and executable (directories: everything beneath).
    pub read_only: Vec<PathBuf>,
    /// Paths readable, writable and executable.
    pub read_write: Vec<PathBuf>,
    /// Also allow reading the system paths a program needs to run (`SYSTEM_PATHS`).
    pub system_paths: bool,
    pub network: Network,
    pub limits: Limits,
    /// When Warden is root: the user to run as (name or uid). `None` means `nobody`.
    pub user: Option<String>,
    /// When Warden is root: the group (name or gid). `None` means the user's primary group.
    pub group: Option<String>,
    /// Refuse to start when a layer cannot be applied.
    pub strict: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            read_only: Vec::new(),
            read_write: Vec::new(),
            system_paths: true,
            network: Network::Deny,
            limits: Limits::default(),
            user: None,
            group: None,
            strict: false,
        }
    }
}

/// What a program needs to run: libraries, interpreters, certificates, name resolution, time
/// zones. `/etc` is listed file by file, so `/etc/shadow` and friends stay out.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
    "/etc/os-release",
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/sys/devices/system/cpu",
    "/proc/self",
];

/// Paths the server may read and write even with nothing declared: the null device.
pub const SYSTEM_RW_PATHS: &[&str] = &["/dev/null"];

/// One layer of the sandbox and how it turned out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    /// `active`, `partial`, `off` or `unavailable`.
    pub state: String,
    pub detail: String,
}

/// What the helper applied, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub layers: Vec<Layer>,
}

impl Report {
    fn add(&mut self, name: &str, state: &str, detail: impl Into<String>) {
        self.layers.push(Layer { name: name.into(), state: state.into(), detail: detail.into() });
    }

    /// `name=state` for each layer, for one log line.
    pub fn summary(&self) -> String {
        self.layers.iter().map(|l| format!("{}={}", l.name, l.state)).collect::<Vec<_>>().join(" ")
    }

    /// Parse the helper's report line (without its prefix).
    pub fn parse(line: &str) -> Option<Report> {
        serde_json::from_str(line).ok()
    }
}

/// The program and arguments that run `program args` inside `policy`, with `helper` (Warden's
/// own binary) as the helper.
pub fn wrap(helper: &Path, policy: &Policy, program: &str, args: &[String]) -> (PathBuf, Vec<OsString>) {
    let mut argv: Vec<OsString> = vec![HELPER_ARG.into(), "1".into()];
    argv.push(serde_json::to_string(policy).expect("policy serializes").into());
    argv.push("--".into());
    argv.push(program.into());
    argv.extend(args.iter().map(OsString::from));
    (helper.to_path_buf(), argv)
}

/// What the running kernel and user allow, for `warden check`.
#[derive(Debug, Clone, Serialize)]
pub struct Support {
    pub root: bool,
    /// Landlock ABI version; 0 when Landlock is unavailable.
    pub landlock_abi: u32,
    pub seccomp: bool,
    pub user_namespaces: bool,
}

impl Support {
    pub fn probe() -> Support {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let max_userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Support {
            root: nix::unistd::geteuid().is_root(),
            landlock_abi: helper::landlock_abi(),
            seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
            user_namespaces: max_userns > 0,
        }
    }

    /// One line describing what `policy` gets on this machine.
    pub fn describe(&self, policy: &Policy) -> String {
        let fs = if self.landlock_abi > 0 {
            format!(
                "Landlock ABI {} ({} read-only, {} read-write path(s){})",
                self.landlock_abi,
                policy.read_only.len(),
                policy.read_write.len(),
                if policy.system_paths { " + system paths" } else { "" }
            )
        } else {
            "filesystem NOT restricted (no Landlock in this kernel)".into()
        };
        let user = if self.root {
            format!("runs as {}", policy.user.as_deref().unwrap_or("nobody"))
        } else {
            "runs as Warden's user".into()
        };
        let net = match policy.network {
            Network::Allow => "network allowed",
            Network::Deny => "network denied (seccomp + Landlock)",
            Network::Isolated => "network isolated (namespace)",
        };
        let seccomp = if self.seccomp { "seccomp deny list" } else { "NO seccomp" };
        format!("{fs}; {seccomp}; {net}; {user}; pid namespace; no_new_privs; limits: {}", policy.limits.describe())
    }
}

/// The install prefix of a program: the directory holding it, or that directory's parent when it
/// is a `bin` directory (so an interpreter finds its `lib`). Both the path as named and as
/// resolved through symlinks count (a virtualenv's `python` links to the base install).
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
        if let Some(dir) = p.parent() {
            let prefix = match (dir.file_name(), dir.parent()) {
                (Some(n), Some(parent)) if n == "bin" && parent != Path::new("/") => parent.to_path_buf(),
                _ => dir.to_path_buf(),
            };
            if !out.contains(&prefix) {
                out.push(prefix);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_the_helper_argument() {
        let p = Policy {
            read_only: vec!["/srv/a".into()],
            network: Network::Isolated,
            limits: Limits { processes: Some(8), ..Default::default() },
            ..Default::default()
        };
        let (_, argv) = wrap(Path::new("/bin/warden"), &p, "server", &["--x".into()]);
        assert_eq!(argv[0], HELPER_ARG);
        let back: Policy = serde_json::from_str(argv[2].to_str().unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(argv[3], "--");
        assert_eq!(argv[4], "server");
        assert_eq!(argv[5], "--x");
    }

    #[test]
    fn prefix_of_a_bin_directory_is_its_parent() {
        let p = program_prefixes(Path::new("/opt/py/bin/python3"));
        assert_eq!(p[0], PathBuf::from("/opt/py"));
        let p = program_prefixes(Path::new("/srv/app/server"));
        assert_eq!(p[0], PathBuf::from("/srv/app"));
        // /usr/bin/x: the prefix is /usr
        assert_eq!(program_prefixes(Path::new("/usr/bin/env"))[0], PathBuf::from("/usr"));
        // /bin/x stays /bin, never /
        assert_eq!(program_prefixes(Path::new("/bin/sh"))[0], PathBuf::from("/bin"));
    }
}
