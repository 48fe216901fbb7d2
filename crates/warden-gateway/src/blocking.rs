//! Running CPU-heavy work reached from async code (vetting a listing of a thousand tools, the
//! look-alike report over every upstream's names) without stalling the async workers that
//! serve everyone else's requests.

/// Run `f` here; when `big` and on a multi-threaded runtime, as blocking work, so that the
/// runtime moves this worker's other tasks to another thread meanwhile
/// (`tokio::task::block_in_place`). Small work runs inline: the hand-off costs more than it.
pub fn heavy<R>(big: bool, f: impl FnOnce() -> R) -> R {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if big && multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
