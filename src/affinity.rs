//! Core pinning over `core_affinity`, with errors instead of silent failure.

use crate::error::PinError;

/// The ids of the cores this machine has online, sorted. Empty when the
/// platform cannot tell.
///
/// On Linux this is `/sys/devices/system/cpu/online`: the machine's cores.
/// A core listed here but outside the process's allowed CPU set (taskset,
/// cgroups; see [`allowed_cores`]) cannot be pinned: `build()` refuses it
/// with [`BuildError::PinFailed`](crate::BuildError::PinFailed).
///
/// ```
/// let cores = tickring::available_cores();
/// assert!(cores.windows(2).all(|pair| pair[0] < pair[1]));
/// ```
pub fn available_cores() -> Vec<usize> {
    sorted(online_cores().unwrap_or_else(affinity_of_calling_thread))
}

/// The ids of the cores this process may run on, sorted: its CPU affinity
/// mask as the operator set it (`taskset`, cgroups' cpuset).
///
/// On Linux this is the process's `Cpus_allowed_list` as it was when the
/// process started (read before `main` runs), so a thread that pinned
/// itself since — the main thread included — does not shrink it and can
/// still build handlers pinned elsewhere. Where that start-up read is not
/// available it is the main thread's mask now, and on other platforms the
/// calling thread's.
///
/// ```
/// let allowed = tickring::allowed_cores();
/// assert!(allowed.iter().all(|core| tickring::available_cores().contains(core)));
/// ```
pub fn allowed_cores() -> Vec<usize> {
    let at_start = at_start::mask();
    sorted(
        at_start
            .or_else(process_cpus_allowed)
            .unwrap_or_else(affinity_of_calling_thread),
    )
}

/// The process's CPU mask as it started: read by a function the loader runs
/// before `main` (an `.init_array` entry), before any thread of the program
/// could pin itself.
#[cfg(all(target_os = "linux", not(miri), not(tickring_loom)))]
mod at_start {
    use std::sync::OnceLock;

    static MASK: OnceLock<Option<Vec<usize>>> = OnceLock::new();

    extern "C" fn capture() {
        let _ = MASK.set(super::process_cpus_allowed());
    }

    #[used]
    #[link_section = ".init_array"]
    static CAPTURE: extern "C" fn() = capture;

    pub(super) fn mask() -> Option<Vec<usize>> {
        MASK.get().cloned().flatten()
    }
}

#[cfg(not(all(target_os = "linux", not(miri), not(tickring_loom))))]
mod at_start {
    pub(super) fn mask() -> Option<Vec<usize>> {
        None
    }
}

/// Pins the calling thread to core `id`.
///
/// Handlers are pinned with the builder's `pin_at_core`; this is for the
/// producer's own thread. Threads inherit their creator's affinity, so pin
/// the producer *after* `build()` if its handlers are not pinned themselves.
///
/// # Errors
///
/// [`PinError::NotAllowed`] when `id` is not in [`allowed_cores`] (any id
/// this machine does not have, `usize::MAX` included), and
/// [`PinError::Refused`] when the operating system refuses.
///
/// ```
/// use tickring::{pin_current_thread, PinError};
///
/// assert!(matches!(pin_current_thread(usize::MAX), Err(PinError::NotAllowed { .. })));
/// ```
pub fn pin_current_thread(id: usize) -> Result<(), PinError> {
    let allowed = allowed_cores();
    if !allowed.contains(&id) {
        return Err(PinError::NotAllowed { core: id, allowed });
    }
    // `core_affinity` fills a fixed `cpu_set_t` (1,024 cores on Linux) and
    // panics past it, inside a function that cannot unwind: refuse first.
    if id >= CPU_SET_CORES {
        return Err(PinError::Refused { core: id });
    }
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        Ok(())
    } else {
        Err(PinError::Refused { core: id })
    }
}

/// The cores a `cpu_set_t` holds on Linux (`CPU_SETSIZE`).
const CPU_SET_CORES: usize = 1024;

fn sorted(mut ids: Vec<usize>) -> Vec<usize> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn affinity_of_calling_thread() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect()
}

/// The process's allowed CPU list from `/proc/self/status`.
fn process_cpus_allowed() -> Option<Vec<usize>> {
    // Miri isolates the file system; it answers the affinity query instead.
    if !cfg!(target_os = "linux") || cfg!(miri) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    parse_cpu_list(list)
}

/// Parses the kernel's online CPU list, e.g. `0-3,6,8-9`.
fn online_cores() -> Option<Vec<usize>> {
    // Miri isolates the file system; it answers the affinity query instead.
    if !cfg!(target_os = "linux") || cfg!(miri) {
        return None;
    }
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    parse_cpu_list(&list)
}

fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for range in list.trim().split(',').filter(|range| !range.is_empty()) {
        match range.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse().ok()?, last.parse::<usize>().ok()?);
                if last < first || last - first > 1 << 16 {
                    return None;
                }
                cores.extend(first..=last);
            }
            None => cores.push(range.parse().ok()?),
        }
    }
    (!cores.is_empty()).then_some(cores)
}

#[cfg(all(test, not(tickring_loom)))]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn parses_kernel_cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,6,8-9\n"),
            Some(vec![0, 1, 2, 3, 6, 8, 9])
        );
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
