//! The helper process: `warden __sandbox <stage> <policy> [<report>] -- <program> <args>`.
//!
//! Stage 1 enters the namespaces. Because a new PID namespace applies only to children, it then
//! starts stage 2 (itself again) as the namespace's pid 1, waits for it and exits with its
//! status. Stage 2 applies the remaining layers to itself, writes the report line on stderr and
//! `exec`s the server, which keeps pid 1. If no PID namespace could be made, stage 1 goes on as
//! stage 2 itself.

use crate::ids::sandbox_ids;
use crate::{seccomp, Network, Policy, Report, HELPER_ARG, REPORT_PREFIX};
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::Uid;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;

/// Exit status when the sandbox cannot be set up (the server never ran).
pub const SETUP_FAILED: i32 = 125;

/// The highest Landlock ABI the running kernel offers, 0 when none.
#[allow(unsafe_code)]
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0 and the VERSION flag
    // only returns the ABI version (or -1 with errno); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

struct Args {
    stage: u8,
    policy: Policy,
    report: Report,
    program: OsString,
    args: Vec<OsString>,
}

fn parse(argv: &[OsString]) -> Result<Args, String> {
    // argv[0] is the binary, argv[1] HELPER_ARG
    if argv.get(1).map(|a| a != HELPER_ARG).unwrap_or(true) {
        return Err("not a sandbox helper invocation".into());
    }
    let stage = match argv.get(2).and_then(|s| s.to_str()) {
        Some("1") => 1,
        Some("2") => 2,
        _ => return Err("bad stage".into()),
    };
    let policy: Policy = serde_json::from_str(argv.get(3).and_then(|s| s.to_str()).ok_or("missing policy")?)
        .map_err(|e| format!("bad policy: {e}"))?;
    let mut i = 4;
    let mut report = Report::default();
    if stage == 2 {
        report = Report::parse(argv.get(4).and_then(|s| s.to_str()).ok_or("missing report")?).ok_or("bad report")?;
        i = 5;
    }
    if argv.get(i).map(|a| a != "--").unwrap_or(true) {
        return Err("missing --".into());
    }
    let program = argv.get(i + 1).cloned().ok_or("missing program")?;
    Ok(Args { stage, policy, report, program, args: argv[i + 2..].to_vec() })
}

/// Run as the sandbox helper; returns only with an exit status (stage 2 returns only when it
/// could not run the server).
pub fn run_helper(argv: Vec<OsString>) -> i32 {
    let a = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warden sandbox: {e}");
            return SETUP_FAILED;
        }
    };
    let result = if a.stage == 1 { stage1(a) } else { stage2(a) };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden sandbox: the server was not started: {e}");
            SETUP_FAILED
        }
    }
}

fn stage1(mut a: Args) -> Result<i32, String> {
    let root = nix::unistd::geteuid().is_root();
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let want_net = a.policy.network == Network::Isolated;
    let base = if root { CloneFlags::CLONE_NEWPID } else { CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUSER };
    let mut entered = None;
    let mut attempts = vec![base];
    if want_net {
        attempts.insert(0, base | CloneFlags::CLONE_NEWNET);
    }
    let mut last_err = String::new();
    for flags in attempts {
        match unshare(flags) {
            Ok(()) => {
                entered = Some(flags);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    if let Some(flags) = entered {
        if flags.contains(CloneFlags::CLONE_NEWUSER) {
            std::fs::write("/proc/self/setgroups", "deny")
                .and_then(|()| std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")))
                .and_then(|()| std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")))
                .map_err(|e| format!("user namespace maps: {e}"))?;
        }
        let mut names = vec!["pid"];
        if flags.contains(CloneFlags::CLONE_NEWNET) {
            names.push("net");
        }
        if flags.contains(CloneFlags::CLONE_NEWUSER) {
            names.push("user");
        }
        a.report.add("namespaces", "active", names.join(","));
    } else {
        if a.policy.strict {
            return Err(format!("namespaces: {last_err}"));
        }
        a.report.add("namespaces", "unavailable", last_err.clone());
    }
    let isolated = entered.is_some_and(|f| f.contains(CloneFlags::CLONE_NEWNET));
    if want_net && !isolated {
        if a.policy.strict {
            return Err(format!("network namespace: {last_err}"));
        }
        a.policy.network = Network::Deny;
        a.report.add("network", "partial", "no network namespace; denied by seccomp and Landlock instead");
    } else if isolated {
        a.report.add("network", "active", "isolated: a fresh network namespace with no usable interface");
    }
    if entered.is_none() {
        return stage2(a);
    }
    // A new PID namespace applies to children: run stage 2 as its pid 1 and pass on its status.
    let policy = serde_json::to_string(&a.policy).map_err(|e| e.to_string())?;
    let report = serde_json::to_string(&a.report).map_err(|e| e.to_string())?;
    let status = std::process::Command::new("/proc/self/exe")
        .arg0(HELPER_ARG)
        .args([HELPER_ARG, "2", &policy, &report, "--"])
        .arg(&a.program)
        .args(&a.args)
        .status()
        .map_err(|e| format!("cannot start stage 2: {e}"))?;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn stage2(mut a: Args) -> Result<i32, String> {
    let p = a.policy.clone();
    limits(&p, &mut a.report)?;
    let in_pidns = std::process::id() == 1;
    drop_user(&p, &mut a.report)?;
    if in_pidns {
        // after the user change, which clears it: end with stage 1 (our parent outside)
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    a.report.add("no_new_privs", "active", "");
    landlock(&p, &PathBuf::from(&a.program), &mut a.report)?;
    match seccomp::filters(p.network != Network::Allow) {
        Ok(progs) => match progs.iter().try_for_each(|prog| seccompiler::apply_filter(prog)) {
            Ok(()) => {
                let net = if p.network == Network::Allow { "" } else { "; sockets other than AF_UNIX refused" };
                a.report.add("seccomp", "active", format!("{} system calls denied{net}", seccomp::DENIED.len()))
            }
            Err(e) if !p.strict => a.report.add("seccomp", "unavailable", e.to_string()),
            Err(e) => return Err(format!("seccomp: {e}")),
        },
        Err(e) => return Err(format!("seccomp filter: {e}")),
    }
    if p.network == Network::Deny && !a.report.layers.iter().any(|l| l.name == "network") {
        a.report.add("network", "active", "denied: only Unix sockets");
    } else if p.network == Network::Allow {
        a.report.add("network", "off", "allowed");
    }
    eprintln!("{REPORT_PREFIX}{}", serde_json::to_string(&a.report).unwrap_or_default());
    let err = std::process::Command::new(&a.program).args(&a.args).exec();
    eprintln!("warden sandbox: cannot run {:?}: {err}", a.program);
    Ok(127)
}

fn limits(p: &Policy, report: &mut Report) -> Result<(), String> {
    let set = |r: Resource, v: u64| setrlimit(r, v, v).map_err(|e| format!("setrlimit {r:?}: {e}"));
    set(Resource::RLIMIT_CORE, 0)?;
    let resources = [
        Resource::RLIMIT_CPU,
        Resource::RLIMIT_AS,
        Resource::RLIMIT_NOFILE,
        Resource::RLIMIT_NPROC,
        Resource::RLIMIT_FSIZE,
    ];
    for (r, (_, v)) in resources.into_iter().zip(p.limits.entries()) {
        if let Some(v) = v {
            set(r, v)?;
        }
    }
    report.add("limits", "active", p.limits.describe());
    Ok(())
}

fn drop_user(p: &Policy, report: &mut Report) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        report.add("user", "off", format!("runs as uid {} (Warden is not root)", nix::unistd::getuid()));
        return Ok(());
    }
    let (uid, gid) = sandbox_ids(p)?;
    if uid.is_root() {
        return Err("refusing to run the server as root: set sandbox.user to an unprivileged user".into());
    }
    nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(uid).map_err(|e| format!("setuid: {e}"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid().is_root() {
        return Err("privileges could not be dropped".into());
    }
    report.add("user", "active", format!("uid {uid} gid {gid}"));
    Ok(())
}

fn landlock(p: &Policy, program: &std::path::Path, report: &mut Report) -> Result<(), String> {
    let abi = ABI::V6;
    let (ro, rw) = crate::reach::granted(p, program);
    let net_deny = p.network != Network::Allow;
    let build = || -> Result<(landlock::RestrictionStatus, usize), landlock::RulesetError> {
        let mut rs =
            Ruleset::default().set_compatibility(CompatLevel::BestEffort).handle_access(AccessFs::from_all(abi))?;
        if net_deny {
            rs = rs.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?;
        }
        let mut created = rs.scope(Scope::AbstractUnixSocket | Scope::Signal)?.create()?;
        let mut rules = 0;
        for (paths, access) in [(&ro, AccessFs::from_read(abi)), (&rw, AccessFs::from_all(abi))] {
            for path in paths {
                // a declared path that does not exist grants nothing
                if let Ok(fd) = PathFd::new(path) {
                    // a file takes only the rights that apply to files
                    let access = if path.is_dir() { access } else { access & AccessFs::from_file(abi) };
                    created = created.add_rule(PathBeneath::new(fd, access))?;
                    rules += 1;
                }
            }
        }
        Ok((created.restrict_self()?, rules))
    };
    match build() {
        Ok((status, rules)) => {
            let state = match status.ruleset {
                RulesetStatus::FullyEnforced => "active",
                RulesetStatus::PartiallyEnforced => "partial",
                RulesetStatus::NotEnforced => "unavailable",
            };
            if p.strict && status.ruleset == RulesetStatus::NotEnforced {
                return Err("Landlock is not available in this kernel".into());
            }
            let net = if net_deny { "; TCP bind/connect denied" } else { "" };
            report.add(
                "landlock",
                state,
                format!(
                    "kernel ABI {}; {rules} path rule(s): {} read-only, {} read-write declared{net}",
                    landlock_abi(),
                    p.read_only.len(),
                    p.read_write.len()
                ),
            );
            Ok(())
        }
        Err(e) if !p.strict => {
            report.add("landlock", "unavailable", e.to_string());
            Ok(())
        }
        Err(e) => Err(format!("landlock: {e}")),
    }
}
