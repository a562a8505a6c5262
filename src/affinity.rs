//! Core pinning over `core_affinity`, with errors instead of silent failure.

/// The ids of the cores this machine has online, sorted. Empty when the
/// platform cannot tell.
///
/// On Linux this is `/sys/devices/system/cpu/online`: the machine's cores,
/// not the calling thread's affinity mask, so a producer thread that pinned
/// itself can still build handlers pinned elsewhere. A core outside the
/// process's CPU set (taskset, cgroups) is listed here; pinning to it fails
/// with [`BuildError::PinFailed`](crate::BuildError::PinFailed).
///
/// ```
/// let cores = tickring::available_cores();
/// assert!(cores.windows(2).all(|pair| pair[0] < pair[1]));
/// ```
pub fn available_cores() -> Vec<usize> {
    let mut ids = online_cores().unwrap_or_else(|| {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|core| core.id)
            .collect()
    });
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Pins the calling thread to core `id`; returns whether the OS agreed.
///
/// Handlers are pinned with the builder's `pin_at_core`; this is for the
/// producer's own thread. Threads inherit their creator's affinity, so pin
/// the producer *after* `build()` if its handlers are not pinned themselves.
pub fn pin_current_thread(id: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id })
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

#[cfg(all(test, not(loom)))]
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
