//! The seccomp deny list. Denied calls fail with EPERM (clone3 with ENOSYS, so libc falls back
//! to clone, whose flags can be checked). Everything else is allowed: a deny list keeps unknown
//! servers working, and the list covers the kernel interfaces used to escape or to reach other
//! processes.

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Denied outright.
pub const DENIED: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    // Reaching into another process without ptrace: stealing its descriptors (pidfd_getfd),
    // signalling or advising it through a pidfd, comparing its kernel objects.
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("process_madvise", libc::SYS_process_madvise),
    ("kcmp", libc::SYS_kcmp),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("quotactl", libc::SYS_quotactl),
    ("syslog", libc::SYS_syslog),
    ("vhangup", libc::SYS_vhangup),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> Result<TargetArch, String> {
    std::env::consts::ARCH.try_into().map_err(|e| format!("{e:?}"))
}

/// The compiled filter. `deny_network`: sockets of families other than AF_UNIX fail too.
pub fn filters(deny_network: bool) -> Result<Vec<BpfProgram>, String> {
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(_, nr)| (*nr, vec![])).collect();
    let flag_rule = |flag: u64| -> Result<SeccompRule, String> {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
            .map_err(|e| e.to_string())?;
        SeccompRule::new(vec![c]).map_err(|e| e.to_string())
    };
    rules.insert(libc::SYS_clone, NAMESPACE_FLAGS.iter().map(|f| flag_rule(*f)).collect::<Result<_, _>>()?);
    if deny_network {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)
            .map_err(|e| e.to_string())?;
        rules.insert(libc::SYS_socket, vec![SeccompRule::new(vec![c]).map_err(|e| e.to_string())?]);
    }
    let main = SeccompFilter::new(rules, SeccompAction::Allow, eperm, arch()?).map_err(|e| e.to_string())?;
    let prog: BpfProgram = main.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    // clone3 passes its flags in memory, out of the filter's sight: answer ENOSYS so libc uses
    // clone. A separate filter, because one filter has one match action.
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    let clone3: BpfProgram = clone3.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut main_prog = x32_guard();
    main_prog.extend(prog);
    // Filters stack and the strictest answer wins, so the two are simply installed in turn.
    Ok(vec![main_prog, clone3])
}

const BPF_RET_K: u16 = 0x06;

/// On x86_64, system calls with bit 30 set are the x32 ABI: same architecture value, other
/// numbers, so they would slip past a deny list. Refuse them all before the main program.
fn x32_guard() -> Vec<sock_filter> {
    if cfg!(target_arch = "x86_64") {
        vec![
            // A = seccomp_data.nr
            sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 },
            // if A >= 0x40000000 fall through to the EPERM return, else skip it
            sock_filter { code: 0x35, jt: 0, jf: 1, k: 0x4000_0000 },
            sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: 0x0005_0000 | libc::EPERM as u32 },
        ]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_compiles_with_and_without_network() {
        let a = super::filters(false).unwrap();
        let b = super::filters(true).unwrap();
        assert_eq!(a.len(), 2);
        assert!(b[0].len() > a[0].len());
    }
}
