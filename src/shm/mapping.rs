//! The file, its mapping and the clock: every call into `libc` of the
//! shared-memory ring, and the casts from mapped bytes to the layout's
//! types. The protocol above works on a [`View`] and never sees a pointer.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::ShmError;
use super::layout::{ConsumerEntry, Geometry, Header, View, HEADER_BYTES};

const PAGE: usize = 4096;

/// A shared, writable mapping of a whole ring file.
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, accessed only through atomic
// words (`View`); nothing in it is tied to the thread that mapped it.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: every access is an atomic operation.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

impl Mapping {
    /// Maps all of `file` (at least `HEADER_BYTES`, checked by the caller),
    /// read-write and shared, its page tables populated.
    fn map(file: &File, len: usize, path: &Path) -> Result<Self, ShmError> {
        debug_assert!(len >= HEADER_BYTES);
        // SAFETY: a fresh mapping chosen by the kernel (`addr` null) of an
        // open file descriptor; it aliases no Rust object. The result is
        // checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ShmError::io(path, "mmap", std::io::Error::last_os_error()));
        }
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| ShmError::io(path, "mmap", std::io::Error::other("null mapping")))?;
        Ok(Self { base, len })
    }

    /// Every word of the mapping.
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base` is page-aligned (so aligned for `AtomicU64`), the
        // mapping is `len` bytes and lives as long as `self`; every bit
        // pattern is a valid `AtomicU64`, and shared memory is only ever
        // accessed atomically through it.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }

    /// The header alone (before the geometry is known).
    pub(crate) fn header(&self) -> &Header {
        debug_assert!(self.len >= HEADER_BYTES);
        // SAFETY: the mapping is at least `HEADER_BYTES` (checked when
        // opened) and page-aligned, so aligned for `Header` (128); `Header`
        // is `repr(C)` and made of atomic words only, so any bytes are a
        // valid `Header`, accessed atomically.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// The layout over this mapping. `geometry.file_bytes <= len` (the
    /// caller checked it against the file's length).
    pub(crate) fn view(&self, geometry: Geometry) -> View<'_> {
        assert!(
            geometry.file_bytes <= self.len,
            "geometry beyond the mapping"
        );
        let words = self.words();
        let slots_from = geometry.slots_offset / 8;
        let slots = &words[slots_from..slots_from + geometry.capacity * geometry.slot_words];
        // SAFETY: the entries lie between the header and the slots, inside
        // the mapping (`file_bytes <= len`); `HEADER_BYTES` is a multiple
        // of 128, so they are aligned for `ConsumerEntry`, which is
        // `repr(C)` and made of atomic words only.
        let entries = unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(HEADER_BYTES).cast::<ConsumerEntry>(),
                geometry.max_consumers,
            )
        };
        View {
            header: self.header(),
            entries,
            slots,
            geometry,
        }
    }

    /// Writes a word in every page: the file's pages exist and are mapped
    /// before the first event (no page fault on the hot path).
    fn prefault(&self) {
        for word in self.words().iter().step_by(PAGE / 8) {
            word.fetch_add(0, Ordering::Relaxed);
        }
    }

    fn lock(&self, path: &Path) -> Result<(), ShmError> {
        // SAFETY: locks the pages of our own live mapping; no memory is
        // read or written.
        let result = unsafe { libc::mlock(self.base.as_ptr().cast(), self.len) };
        if result != 0 {
            return Err(ShmError::io(path, "mlock", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `map`; every reference into it
        // borrows `self`, so none outlives this.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// What `create` needs beyond the geometry.
pub(crate) struct CreateSpec<'a> {
    pub(crate) mode: u32,
    pub(crate) replace: bool,
    pub(crate) lock_memory: bool,
    pub(crate) schema_name: &'a str,
    pub(crate) schema_version: u32,
    pub(crate) timeout_ns: u64,
    pub(crate) heartbeat_ns: u64,
}

/// Creates the ring file at `path`: written in full under a temporary
/// name in the same directory, then linked (or renamed, to replace) into
/// place, so an opener never finds a half-written ring.
pub(crate) fn create(
    path: &Path,
    geometry: Geometry,
    spec: &CreateSpec<'_>,
) -> Result<Mapping, ShmError> {
    let temp = temp_path(path);
    let result = create_at(&temp, path, geometry, spec);
    let _ = std::fs::remove_file(&temp);
    result
}

fn create_at(
    temp: &Path,
    path: &Path,
    geometry: Geometry,
    spec: &CreateSpec<'_>,
) -> Result<Mapping, ShmError> {
    if !spec.replace && path.exists() {
        return Err(ShmError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(spec.mode)
        .open(temp)
        .map_err(|error| ShmError::io(temp, "create", error))?;
    file.set_len(geometry.file_bytes as u64)
        .map_err(|error| ShmError::io(temp, "set_len", error))?;
    let mapping = Mapping::map(&file, geometry.file_bytes, temp)?;
    mapping.prefault();
    if spec.lock_memory {
        mapping.lock(path)?;
    }
    let view = mapping.view(geometry);
    view.initialize(
        spec.schema_name,
        spec.schema_version,
        spec.timeout_ns,
        spec.heartbeat_ns,
        u64::from(std::process::id()),
        monotonic_ns(),
    );
    view.publish_magic();
    if spec.replace {
        std::fs::rename(temp, path).map_err(|error| ShmError::io(path, "rename", error))?;
    } else {
        std::fs::hard_link(temp, path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                ShmError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                ShmError::io(path, "link", error)
            }
        })?;
    }
    Ok(mapping)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{}", std::process::id(), monotonic_ns()));
    path.with_file_name(name)
}

/// Opens and maps an existing ring file (its contents are validated by
/// the caller).
pub(crate) fn open(path: &Path, lock_memory: bool) -> Result<Mapping, ShmError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|error| ShmError::io(path, "open", error))?;
    let len = file
        .metadata()
        .map_err(|error| ShmError::io(path, "stat", error))?
        .len();
    if len < HEADER_BYTES as u64 {
        return Err(ShmError::TooSmall {
            len,
            needed: HEADER_BYTES as u64,
        });
    }
    let len = usize::try_from(len).map_err(|_| ShmError::TooSmall {
        len,
        needed: HEADER_BYTES as u64,
    })?;
    let mapping = Mapping::map(&file, len, path)?;
    if lock_memory {
        mapping.lock(path)?;
    }
    Ok(mapping)
}

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process on the
/// host, so its readings compare across processes. The heartbeats use it;
/// so can events that carry their publish time to another process.
///
/// ```
/// let before = tickring::shm::monotonic_ns();
/// assert!(tickring::shm::monotonic_ns() >= before);
/// ```
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `now`, a valid `timespec`;
    // `CLOCK_MONOTONIC` always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// The mapping's length, for checks against the header.
pub(crate) fn len(mapping: &Mapping) -> usize {
    mapping.len
}

/// Lets the calling thread run on every core the process started with
/// (a heartbeat thread must not inherit its creator's pinning to a hot
/// core). Best effort: on failure the thread keeps its mask.
pub(crate) fn unpin_current_thread() {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut any = false;
    for core in crate::allowed_cores() {
        if core < libc::CPU_SETSIZE as usize {
            // SAFETY: `core` is below `CPU_SETSIZE`, inside the set.
            unsafe { libc::CPU_SET(core, &mut set) };
            any = true;
        }
    }
    if any {
        // SAFETY: sets the calling thread's (pid 0) mask from a valid set
        // of the size passed.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}
