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
//!    `/proc/self`. The install prefix is never a home directory, the root, a shared top-level
//!    directory or one that holds credentials (`~/.cargo`, `~/.config`): then only the
//!    program's own directory (or file) is granted. With network `deny`, TCP bind and connect are refused too (ABI ≥ 4).
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
//! - side channels;
//! - a layer the kernel cannot apply when `strict` is off: it is reported, not refused. Without
//!   a PID namespace and Landlock's signal scope (ABI 6), a server running as Warden's uid can
//!   signal Warden.
//!
//! `unsafe` appears once, in the Landlock ABI probe (a bare system call).
//!
//! Each layer is applied best-effort on the running kernel and reported. With `strict`, a layer
//! that cannot be applied stops the server from starting. Without it, a layer not in force
//! ([`Report::gaps`]) is not silent: the gateway logs it at WARN, `/readyz` lists it under
//! `sandbox`, and `warden check` names it for this machine by running the helper itself
//! ([`probe`]).
#![deny(unsafe_code)]

mod helper;
mod ids;
mod prefix;
mod reach;
mod seccomp;

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use helper::run_helper;
pub use prefix::program_prefixes;
pub use reach::{blocked_arguments, blocked_in_stderr, exposed, granted, Blocked};

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

    /// Each of [`LAYERS`] that is not fully in force, in that order. A layer the report does not
    /// name is missing, so an empty report (no sandbox) misses all of them. `user` is `off` when
    /// Warden is not root: the server keeps Warden's uid, there is nothing to drop, and that is
    /// not a gap. `network` is missing when the config allows it.
    pub fn gaps(&self) -> Vec<Gap> {
        LAYERS
            .iter()
            .filter_map(|&layer| {
                let name = if layer == "pid_namespace" { "namespaces" } else { layer };
                let found = self.layers.iter().find(|l| l.name == name);
                let state = found.map_or("absent", |l| l.state.as_str());
                let detail = found.map_or_else(|| "not applied".to_string(), |l| l.detail.clone());
                let in_force = match layer {
                    "pid_namespace" => state == "active" && detail.split(',').any(|n| n == "pid"),
                    "user" => matches!(state, "active" | "off"),
                    _ => state == "active",
                };
                (!in_force).then_some(Gap { layer, partial: state == "partial", detail })
            })
            .collect()
    }

    /// The layers not in force at all.
    pub fn missing(&self) -> Vec<&'static str> {
        self.gaps().into_iter().filter(|g| !g.partial).map(|g| g.layer).collect()
    }

    /// The layers in force only in part.
    pub fn partial(&self) -> Vec<&'static str> {
        self.gaps().into_iter().filter(|g| g.partial).map(|g| g.layer).collect()
    }
}

/// The layers a report is judged by ([`Report::gaps`]): what `/readyz`, `warden check` and the
/// log name when one is not in force.
pub const LAYERS: [&str; 5] = ["pid_namespace", "landlock", "seccomp", "user", "network"];

/// One of [`LAYERS`] that is not fully in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub layer: &'static str,
    /// Applied in part: Landlock on a kernel with an older ABI, an isolated network that fell
    /// back to `deny`.
    pub partial: bool,
    /// The helper's words: the kernel's refusal, `allowed`, ….
    pub detail: String,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = if self.partial { "partial: " } else { "" };
        write!(f, "{} ({part}{})", self.layer, self.detail)
    }
}

/// What this machine applies of `policy`, layer by layer: the helper (`helper`, Warden's own
/// binary) sets the sandbox up exactly as it does for a server, writes its report, and then runs
/// `/bin/true` in the server's place. With `policy.strict`, a layer that cannot be applied is the
/// error (the helper's own message).
pub fn probe(helper: &Path, policy: &Policy) -> Result<Report, String> {
    let (program, argv) = wrap(helper, policy, "/bin/true", &[]);
    let out = std::process::Command::new(program)
        .args(argv)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run the sandbox helper: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if let Some(r) = err.lines().find_map(|l| l.strip_prefix(REPORT_PREFIX)).and_then(|j| Report::parse(j.trim())) {
        return Ok(r);
    }
    let said: String = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no report").chars().take(300).collect();
    Err(format!("{said} ({})", out.status))
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
        format!("{fs}; {seccomp}; {net}; {user}; no_new_privs; limits: {}", policy.limits.describe())
    }
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

    fn report(layers: &[(&str, &str, &str)]) -> Report {
        Report {
            layers: layers
                .iter()
                .map(|(n, s, d)| Layer { name: n.to_string(), state: s.to_string(), detail: d.to_string() })
                .collect(),
        }
    }

    /// The gaps `/readyz` and `warden check` name: every layer not in force, partial ones apart.
    #[test]
    fn the_layers_not_in_force_are_named() {
        let full = [
            ("namespaces", "active", "pid,user"),
            ("limits", "active", "core=0"),
            ("user", "off", "runs as uid 1000 (Warden is not root)"),
            ("no_new_privs", "active", ""),
            ("landlock", "active", "kernel ABI 6"),
            ("seccomp", "active", "53 system calls denied"),
            ("network", "active", "denied: only Unix sockets"),
        ];
        assert_eq!(report(&full).gaps(), vec![]);
        let weak = report(&[
            ("namespaces", "unavailable", "EPERM: Operation not permitted"),
            ("network", "partial", "no network namespace; denied by seccomp and Landlock instead"),
            ("user", "active", "uid 65534 gid 65534"),
            ("landlock", "partial", "kernel ABI 3"),
            ("seccomp", "unavailable", "EINVAL"),
        ]);
        assert_eq!(weak.missing(), vec!["pid_namespace", "seccomp"]);
        assert_eq!(weak.partial(), vec!["landlock", "network"]);
        assert_eq!(weak.gaps()[0].to_string(), "pid_namespace (EPERM: Operation not permitted)");
        let allowed = report(&[("namespaces", "active", "pid"), ("network", "off", "allowed")]);
        assert_eq!(allowed.missing(), vec!["landlock", "seccomp", "user", "network"]);
        assert_eq!(Report::default().missing(), LAYERS.to_vec());
    }
}
