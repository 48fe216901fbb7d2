//! Who a sandboxed server runs as. A leaf: the helper that drops to these ids and the reach
//! check that asks what they may read both use it.

use crate::Policy;
use nix::unistd::{Gid, Group, Uid, User};

/// The user and group a server runs as when Warden is root: `user` (default `nobody`, 65534
/// when the system has no such entry) and `group` (default the user's).
pub(crate) fn sandbox_ids(p: &Policy) -> Result<(Uid, Gid), String> {
    let spec = p.user.as_deref().unwrap_or("nobody");
    let user = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n))
            .ok()
            .flatten()
            .map(|u| (u.uid, u.gid))
            .or(Some((Uid::from_raw(n), Gid::from_raw(n)))),
        Err(_) => User::from_name(spec).ok().flatten().map(|u| (u.uid, u.gid)),
    };
    let (uid, mut gid) = match (user, spec) {
        (Some(u), _) => u,
        (None, "nobody") => (Uid::from_raw(65534), Gid::from_raw(65534)),
        (None, _) => return Err(format!("unknown user {spec:?}")),
    };
    if let Some(g) = &p.group {
        gid = match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => Group::from_name(g).ok().flatten().map(|g| g.gid).ok_or(format!("unknown group {g:?}"))?,
        };
    }
    Ok((uid, gid))
}
