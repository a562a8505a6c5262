//! Core pinning over `core_affinity`, with errors instead of silent failure.

/// The ids of the cores this process may run on (its affinity mask), sorted.
/// Empty when the platform cannot tell.
///
/// ```
/// let cores = tickring::available_cores();
/// assert!(cores.windows(2).all(|pair| pair[0] < pair[1]));
/// ```
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Pins the calling thread to core `id`; returns whether the OS agreed.
///
/// Handlers are pinned with the builder's `pin_at_core`; this is for the
/// producer's own thread.
pub fn pin_current_thread(id: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id })
}
