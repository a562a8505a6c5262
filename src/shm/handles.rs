//! The handles: [`ShmProducer`], [`ShmConsumer`], their options, and the
//! heartbeat threads that keep them alive in each other's eyes.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event_producer::{sealed::Claimer, NoRoom, Room};
use crate::handler::EventHandler;
use crate::ring_buffer::Claim;
use crate::sequencer::FullRingWait;
use crate::wait::{BusySpin, Sleeping, WaitStrategy, Yielding};

use super::error::{ConsumeError, ShmError};
use super::layout::{MAX_CONSUMERS, MAX_EVENT_SIZE, MAX_SCHEMA_NAME, MAX_SHM_CAPACITY};
use super::protocol::{self, JoinAt};

use super::layout::{
    Geometry, View, D2_FILE_BYTES, D_CAPACITY, D_EVENT_ALIGN, D_EVENT_SIZE, D_MAGIC,
    D_MAX_CONSUMERS, D_SCHEMA_VERSION, D_SLOT_BYTES, D_VERSION, LAYOUT_VERSION, MAGIC,
};
use super::mapping::{self, monotonic_ns, Mapping};
use super::protocol::{ConsumerCore, JoinFailure, Polled, ProducerCore};

/// An event that may travel through a shared ring: plain data, and a
/// schema name and version that every process using the ring agrees on.
///
/// Derive `bytemuck::Pod` and `bytemuck::Zeroable` on a `#[repr(C)]`
/// struct without padding (the derive refuses padding and pointers), then
/// name it:
///
/// ```
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Trade { instrument: u64, price: i64, quantity: i64 }
///
/// impl tickring::shm::ShmEvent for Trade {
///     const SCHEMA_NAME: &'static str = "desk.trade";
///     const SCHEMA_VERSION: u32 = 3; // bump when the fields change
/// }
/// ```
pub trait ShmEvent: bytemuck::Pod + Send {
    /// The event type's name, recorded in the ring (at most
    /// [`MAX_SCHEMA_NAME`] bytes).
    const SCHEMA_NAME: &'static str;
    /// The layout's version: change it whenever the fields change.
    const SCHEMA_VERSION: u32;
}

/// The mapping and the layout over it, shared by a handle and its
/// heartbeat thread.
struct RingMemory {
    view: View<'static>,
    // Declared after `view`: nothing in `view` is used once this drops.
    _mapping: Mapping,
}

impl RingMemory {
    fn new(mapping: Mapping, geometry: Geometry) -> Self {
        let view = mapping.view(geometry);
        // SAFETY: the view borrows the mapping's memory, which does not
        // move with the `Mapping` value (it is an mmap) and is unmapped only
        // when `_mapping` drops, together with this struct; `view()` hands
        // the view out only for as long as `&self` lives, never as
        // `'static`. (`ShmProducer` keeps a copy beside its `Arc` of this
        // struct, and likewise lends it only for as long as `&self`.)
        let view = unsafe { std::mem::transmute::<View<'_>, View<'static>>(view) };
        Self {
            view,
            _mapping: mapping,
        }
    }

    #[inline(always)]
    fn view(&self) -> &View<'_> {
        &self.view
    }
}

/// A copy of `memory`'s view for a handle that holds `memory` for as long
/// as it keeps the copy, and lends it out only for as long as `&self`.
fn memory_view(memory: &RingMemory) -> View<'static> {
    memory.view
}

/// Whose heartbeat a thread stamps.
#[derive(Clone, Copy)]
enum Beat {
    Producer,
    Consumer(usize),
}

/// Stamps the time into a word of the ring every interval, on its own
/// thread, until dropped.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(memory: Arc<RingMemory>, interval: Duration, beat: Beat) -> Result<Self, ShmError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let name = match beat {
            Beat::Producer => "tickring-shm-producer-heartbeat",
            Beat::Consumer(_) => "tickring-shm-consumer-heartbeat",
        };
        let (started, on_start) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Not on the (maybe pinned, hot) core of the thread that
                // created the handle.
                mapping::unpin_current_thread();
                let view = memory.view();
                let word = match beat {
                    Beat::Producer => protocol::producer_heartbeat_word(view),
                    Beat::Consumer(index) => protocol::consumer_heartbeat_word(view, index),
                };
                word.store(monotonic_ns(), Ordering::Relaxed);
                // Whatever the thread allocates on its first park happens
                // before `create`/`open` returns, not in the caller's hot
                // phase.
                std::thread::park_timeout(Duration::ZERO);
                let _ = started.send(());
                while !stopping.load(Ordering::Acquire) {
                    word.store(monotonic_ns(), Ordering::Relaxed);
                    std::thread::park_timeout(interval);
                }
            })
            .map_err(|error| ShmError::io(Path::new(name), "spawn", error))?;
        let _ = on_start.recv();
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// How a producer creates a ring.
#[derive(Debug, Clone)]
pub struct ShmOptions {
    capacity: usize,
    max_consumers: usize,
    liveness_timeout: Duration,
    heartbeat_interval: Option<Duration>,
    mode: u32,
    replace: bool,
    lock_memory: bool,
    remove_on_close: bool,
    full_ring_wait: FullRingWait,
}

impl ShmOptions {
    /// A ring of `capacity` events (a power of two, at most
    /// [`MAX_SHM_CAPACITY`]); everything else at its default.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            max_consumers: 16,
            liveness_timeout: Duration::from_secs(2),
            heartbeat_interval: None,
            mode: 0o600,
            replace: false,
            lock_memory: false,
            remove_on_close: true,
            full_ring_wait: FullRingWait::Yield,
        }
    }

    /// How many consumers may join at once (1 to [`MAX_CONSUMERS`];
    /// default 16).
    pub fn max_consumers(mut self, max_consumers: usize) -> Self {
        self.max_consumers = max_consumers;
        self
    }

    /// How long a consumer's heartbeat may stay silent before the producer
    /// evicts it, if it holds the producer back (default 2 s; at least
    /// 2 ms).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// How often the producer stamps its heartbeat (default a tenth of the
    /// liveness timeout, at least 1 ms).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// The file's permission bits (default `0o600`: this user only).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Replace a file already at the path (default: refuse with
    /// [`ShmError::AlreadyExists`]). Processes that mapped the old file
    /// keep it, and see its producer as closed or dead.
    pub fn replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }

    /// `mlock` the ring so it is never paged out (default off; needs
    /// `RLIMIT_MEMLOCK` room).
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }

    /// Remove the file when the producer closes or drops (default on;
    /// consumers that have it open keep reading it).
    pub fn remove_on_close(mut self, remove: bool) -> Self {
        self.remove_on_close = remove;
        self
    }

    /// How the producer waits while the ring is full (default
    /// [`FullRingWait::Yield`]).
    pub fn full_ring_wait(mut self, wait: FullRingWait) -> Self {
        self.full_ring_wait = wait;
        self
    }
}

/// The shortest liveness timeout: twice the shortest heartbeat interval.
const MIN_LIVENESS_TIMEOUT: Duration = Duration::from_millis(2);

/// How often a waiting participant looks at the others' liveness.
const LIVENESS_CHECK: Duration = Duration::from_millis(1);

fn timeout_ns(timeout: Duration, option: &'static str) -> Result<u64, ShmError> {
    if timeout < MIN_LIVENESS_TIMEOUT {
        return Err(ShmError::option(
            option,
            format!("{timeout:?} is under the minimum, {MIN_LIVENESS_TIMEOUT:?}"),
        ));
    }
    Ok(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
}

fn interval(interval: Option<Duration>, timeout: Duration) -> Duration {
    interval
        .unwrap_or(timeout / 10)
        .clamp(Duration::from_millis(1), Duration::from_secs(3600))
}

fn geometry_for<E: ShmEvent>(capacity: usize, max_consumers: usize) -> Result<Geometry, ShmError> {
    if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_SHM_CAPACITY {
        return Err(ShmError::option(
            "capacity",
            format!("{capacity} is not a power of two from 1 to {MAX_SHM_CAPACITY}"),
        ));
    }
    if max_consumers == 0 || max_consumers > MAX_CONSUMERS {
        return Err(ShmError::option(
            "max_consumers",
            format!("{max_consumers} is not from 1 to {MAX_CONSUMERS}"),
        ));
    }
    if std::mem::size_of::<E>() > MAX_EVENT_SIZE || std::mem::align_of::<E>() > 64 {
        return Err(ShmError::option(
            "event type",
            format!(
                "{} bytes aligned to {}: at most {MAX_EVENT_SIZE} bytes aligned to at most 64",
                std::mem::size_of::<E>(),
                std::mem::align_of::<E>()
            ),
        ));
    }
    if E::SCHEMA_NAME.len() > MAX_SCHEMA_NAME {
        return Err(ShmError::option(
            "ShmEvent::SCHEMA_NAME",
            format!("{} bytes; at most {MAX_SCHEMA_NAME}", E::SCHEMA_NAME.len()),
        ));
    }
    Geometry::new(
        capacity,
        max_consumers,
        std::mem::size_of::<E>(),
        std::mem::align_of::<E>(),
    )
    .ok_or_else(|| ShmError::option("capacity", "the ring would not fit in memory"))
}

/// What a producer did, from [`ShmProducer::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShmProducerReport {
    /// Events published.
    pub published: u64,
    /// Consumers evicted because their heartbeat stopped.
    pub evictions: u64,
}

/// The producer of a shared ring: creates the file and publishes into it
/// through [`EventProducer`](crate::EventProducer), like an in-process
/// producer.
///
/// `fill` gets a zeroed event to fill (not the slot's previous event, as
/// in-process): the slot is written from it in one pass of word stores.
pub struct ShmProducer<E: ShmEvent> {
    core: ProducerCore,
    memory: Arc<RingMemory>,
    path: PathBuf,
    timeout_ns: u64,
    full_ring_wait: FullRingWait,
    remove_on_close: bool,
    closed: bool,
    /// A copy of `memory`'s view, one pointer hop nearer for the
    /// publishing path; valid while `memory` is held (see `RingMemory`).
    view: View<'static>,
    heartbeat: Option<Heartbeat>,
    _event: PhantomData<fn(E) -> E>,
}

impl<E: ShmEvent> std::fmt::Debug for ShmProducer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmProducer")
            .field("path", &self.path)
            .field("next", &self.core.next)
            .field("evictions", &self.core.evictions)
            .finish_non_exhaustive()
    }
}

impl<E: ShmEvent> ShmProducer<E> {
    /// Creates the ring file at `path` (every page touched, and locked if
    /// asked) and starts the producer's heartbeat.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidOption`] for a capacity that is not a power of
    /// two up to [`MAX_SHM_CAPACITY`], a consumer count outside 1 to
    /// [`MAX_CONSUMERS`], a timeout under 2 ms, a schema name over
    /// [`MAX_SCHEMA_NAME`] bytes or an event over [`MAX_EVENT_SIZE`];
    /// [`ShmError::AlreadyExists`] when the path exists (see
    /// [`ShmOptions::replace`]); [`ShmError::Io`] when the file cannot be
    /// created, sized, mapped or locked.
    pub fn create(path: impl AsRef<Path>, options: &ShmOptions) -> Result<Self, ShmError> {
        let path = path.as_ref();
        let geometry = geometry_for::<E>(options.capacity, options.max_consumers)?;
        let timeout_ns = timeout_ns(options.liveness_timeout, "liveness_timeout")?;
        let beat = interval(options.heartbeat_interval, options.liveness_timeout);
        let spec = mapping::CreateSpec {
            mode: options.mode,
            replace: options.replace,
            lock_memory: options.lock_memory,
            schema_name: E::SCHEMA_NAME,
            schema_version: E::SCHEMA_VERSION,
            timeout_ns,
            heartbeat_ns: u64::try_from(beat.as_nanos()).unwrap_or(u64::MAX),
        };
        let mapping = mapping::create(path, geometry, &spec)?;
        let memory = Arc::new(RingMemory::new(mapping, geometry));
        let heartbeat = Heartbeat::start(Arc::clone(&memory), beat, Beat::Producer)?;
        Ok(Self {
            view: memory_view(&memory),
            core: ProducerCore::new(),
            memory,
            path: path.to_path_buf(),
            timeout_ns,
            full_ring_wait: options.full_ring_wait,
            remove_on_close: options.remove_on_close,
            closed: false,
            heartbeat: Some(heartbeat),
            _event: PhantomData,
        })
    }

    /// The ring's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Consumers evicted so far because their heartbeat stopped while they
    /// held the producer back.
    pub fn evictions(&self) -> u64 {
        self.core.evictions
    }

    /// Consumers in the gate whose join is complete: each knows where it
    /// starts, so a producer that waits for `n` consumers before its first
    /// publish loses none of its events to any of them.
    /// Takes `&mut self` because it first refreshes the producer's gate,
    /// which also acknowledges consumers joining at an explicit sequence
    /// (they wait for that), so waiting on this count cannot deadlock.
    pub fn active_consumers(&mut self) -> usize {
        self.core.refresh(self.memory.view());
        protocol::active_consumers(self.memory.view())
    }

    /// Marks the ring closed: consumers handle everything published, then
    /// stop ([`ShmConsumer::run`] returns `Ok`). Removes the file if
    /// [`ShmOptions::remove_on_close`] (the default).
    pub fn close(mut self) -> ShmProducerReport {
        self.close_once()
    }

    fn close_once(&mut self) -> ShmProducerReport {
        if !self.closed {
            self.closed = true;
            self.core.close(self.memory.view());
            self.heartbeat = None;
            if self.remove_on_close {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        ShmProducerReport {
            published: self.core.next as u64,
            evictions: self.core.evictions,
        }
    }

    /// The producer's slow path: waits for room, evicting consumers whose
    /// heartbeat stopped, until there is room or the timeout passes.
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self, count: i64, timeout: Option<Duration>) -> Result<(), NoRoom> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            let view = self.memory.view();
            let core = &mut self.core;
            let slice = deadline.map_or(LIVENESS_CHECK, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(LIVENESS_CHECK)
            });
            let found = self
                .full_ring_wait
                .wait_until(Some(slice), || core.has_room(view, count).then_some(()));
            if found.is_some() {
                return Ok(());
            }
            self.core
                .evict_stale(view, count, monotonic_ns(), self.timeout_ns);
            if self.core.has_room(view, count) {
                return Ok(());
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(NoRoom::Full);
            }
        }
    }
}

impl<E: ShmEvent> Drop for ShmProducer<E> {
    fn drop(&mut self) {
        self.close_once();
    }
}

impl<E: ShmEvent> Claimer<E> for ShmProducer<E> {
    #[inline(always)]
    fn claim(&mut self, count: i64, room: Room) -> Result<Claim, NoRoom> {
        // (`close` takes the producer by value: no claim comes after it.)
        if !self.core.has_room(&self.view, count) {
            match room {
                Room::Wait => self.wait_for_room(count, None)?,
                Room::Within(timeout) => self.wait_for_room(count, Some(timeout))?,
                Room::Now => {
                    let view = self.memory.view();
                    if self
                        .core
                        .evict_stale(view, count, monotonic_ns(), self.timeout_ns)
                        == 0
                        || !self.core.has_room(view, count)
                    {
                        return Err(NoRoom::Full);
                    }
                }
            }
        }
        let first = self.core.next;
        // SAFETY: invariant 1 — one producer per ring (`ShmProducer` is not
        // `Clone` and owns the file it created), the sequences are past
        // every published one, and `has_room` found every active
        // consumer's sequence `>= last - capacity`.
        Ok(unsafe { Claim::new(first, first + count - 1) })
    }

    fn write_and_publish<F: FnMut(&mut E, i64)>(&mut self, claim: Claim, mut fill: F) -> i64 {
        let view = &self.view;
        for sequence in claim.next()..=claim.last() {
            let mut event = E::zeroed();
            fill(&mut event, sequence);
            self.core.write_and_publish(view, sequence, &event);
        }
        claim.last()
    }

    #[inline(always)]
    fn write_and_publish_one<F: FnOnce(&mut E)>(&mut self, claim: Claim, fill: F) -> i64 {
        let sequence = claim.next();
        let mut event = E::zeroed();
        fill(&mut event);
        self.core.write_and_publish(&self.view, sequence, &event);
        sequence
    }

    fn last_claimed(&self) -> i64 {
        self.core.next - 1
    }

    fn ring_capacity(&self) -> usize {
        self.memory.view().geometry.capacity
    }

    fn free_slots(&self) -> usize {
        protocol::free_slots(self.memory.view(), self.core.next)
    }
}

/// How a consumer opens a ring.
#[derive(Debug, Clone)]
pub struct ShmConsumerOptions {
    join_at: JoinAt,
    capacity: Option<usize>,
    liveness_timeout: Duration,
    heartbeat_interval: Option<Duration>,
    max_batch_size: usize,
    join_timeout: Duration,
    lock_memory: bool,
}

impl Default for ShmConsumerOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ShmConsumerOptions {
    /// Join at the cursor; any capacity; defaults for the rest.
    pub fn new() -> Self {
        Self {
            join_at: JoinAt::Cursor,
            capacity: None,
            liveness_timeout: Duration::from_secs(2),
            heartbeat_interval: None,
            max_batch_size: crate::DEFAULT_MAX_BATCH_SIZE,
            join_timeout: Duration::from_secs(5),
            lock_memory: false,
        }
    }

    /// Where to start (default [`JoinAt::Cursor`]).
    pub fn join_at(mut self, join_at: JoinAt) -> Self {
        self.join_at = join_at;
        self
    }

    /// Refuse a ring of another capacity ([`ShmError::Capacity`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// How long the producer's heartbeat may stay silent before
    /// [`ConsumeError::ProducerDead`] (default 2 s; at least 2 ms, and at
    /// least twice the producer's heartbeat interval, which the ring
    /// records: opening fails otherwise).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// How often this consumer stamps its heartbeat (default a tenth of
    /// the shorter of its own and the producer's liveness timeouts, at
    /// least 1 ms). Opening fails if it is over half the producer's
    /// timeout.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }

    /// The most events handed over before the consumer's sequence is
    /// released (default [`DEFAULT_MAX_BATCH_SIZE`](crate::DEFAULT_MAX_BATCH_SIZE);
    /// at least 1).
    pub fn max_batch_size(mut self, max_batch_size: usize) -> Self {
        self.max_batch_size = max_batch_size;
        self
    }

    /// How long a [`JoinAt::Sequence`] join waits for the producer to take
    /// it into its gate (default 5 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// `mlock` the mapping (default off).
    pub fn lock_memory(mut self, lock: bool) -> Self {
        self.lock_memory = lock;
        self
    }
}

/// What one [`ShmConsumer::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShmPollState {
    /// It handed this many events (at least one) to the handler.
    Handled(usize),
    /// Nothing new is published.
    Idle,
    /// The producer closed the ring and every event it published was
    /// handled.
    Closed,
}

/// A consumer of a shared ring, in any process: joins the producer's gate
/// when opened, leaves it when dropped.
///
/// Drive it on your own thread with [`ShmConsumer::poll`], or let
/// [`ShmConsumer::run`] loop until the producer closes. Pin the thread
/// first with [`pin_current_thread`](crate::pin_current_thread) for the
/// lowest latency.
pub struct ShmConsumer<E: ShmEvent> {
    core: ConsumerCore,
    memory: Arc<RingMemory>,
    producer_timeout_ns: u64,
    max_batch: usize,
    idle_polls: u32,
    handled: u64,
    left: bool,
    _heartbeat: Heartbeat,
    _event: PhantomData<fn(E) -> E>,
}

impl<E: ShmEvent> std::fmt::Debug for ShmConsumer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmConsumer")
            .field("entry", &self.core.index)
            .field("next", &self.core.next)
            .field("handled", &self.handled)
            .finish_non_exhaustive()
    }
}

/// Checks an opened file's header against this process's event type and
/// returns the geometry computed locally.
fn validate<E: ShmEvent>(
    mapping: &Mapping,
    expected_capacity: Option<usize>,
) -> Result<Geometry, ShmError> {
    let header = mapping.header();
    let word = |index: usize| header.describe[index].load(Ordering::Acquire);
    let magic = word(D_MAGIC);
    if magic == 0 {
        return Err(ShmError::NotInitialized);
    }
    if magic != MAGIC {
        return Err(ShmError::BadMagic { found: magic });
    }
    let version = word(D_VERSION);
    if version != LAYOUT_VERSION {
        return Err(ShmError::LayoutVersion {
            found: version,
            expected: LAYOUT_VERSION,
        });
    }
    let schema_version = word(D_SCHEMA_VERSION);
    let view_name = super::layout::schema_name(header);
    if view_name != E::SCHEMA_NAME || schema_version != u64::from(E::SCHEMA_VERSION) {
        return Err(ShmError::Schema {
            found_name: view_name,
            found_version: schema_version,
            expected_name: E::SCHEMA_NAME,
            expected_version: E::SCHEMA_VERSION,
        });
    }
    let event_size = word(D_EVENT_SIZE);
    if event_size != std::mem::size_of::<E>() as u64 {
        return Err(ShmError::EventSize {
            found: event_size,
            expected: std::mem::size_of::<E>(),
        });
    }
    let event_align = word(D_EVENT_ALIGN);
    if event_align != std::mem::align_of::<E>() as u64 {
        return Err(ShmError::EventAlign {
            found: event_align,
            expected: std::mem::align_of::<E>(),
        });
    }
    let capacity = word(D_CAPACITY);
    if let Some(expected) = expected_capacity {
        if capacity != expected as u64 {
            return Err(ShmError::Capacity {
                found: capacity,
                expected,
            });
        }
    }
    let corrupt = |field, value| ShmError::Corrupt { field, value };
    let capacity_local = usize::try_from(capacity)
        .ok()
        .filter(|c| c.is_power_of_two() && *c <= MAX_SHM_CAPACITY)
        .ok_or(corrupt("capacity", capacity))?;
    let max_consumers = word(D_MAX_CONSUMERS);
    let max_consumers_local = usize::try_from(max_consumers)
        .ok()
        .filter(|m| (1..=MAX_CONSUMERS).contains(m))
        .ok_or(corrupt("max_consumers", max_consumers))?;
    let geometry = geometry_for::<E>(capacity_local, max_consumers_local)
        .map_err(|_| corrupt("capacity", capacity))?;
    let slot_bytes = word(D_SLOT_BYTES);
    if slot_bytes != geometry.slot_bytes() as u64 {
        return Err(corrupt("slot_bytes", slot_bytes));
    }
    let file_bytes = header.describe2[D2_FILE_BYTES].load(Ordering::Acquire);
    if file_bytes != geometry.file_bytes as u64 {
        return Err(corrupt("file_bytes", file_bytes));
    }
    let len = mapping::len(mapping);
    if len < geometry.file_bytes {
        return Err(ShmError::TooSmall {
            len: len as u64,
            needed: geometry.file_bytes as u64,
        });
    }
    Ok(geometry)
}

impl<E: ShmEvent> ShmConsumer<E> {
    /// Opens the ring at `path`, checks that it carries `E`, and joins the
    /// producer's gate (at the cursor unless the options say otherwise).
    ///
    /// # Errors
    ///
    /// [`ShmError::Io`] when the file is missing or may not be opened
    /// read-write; [`ShmError::TooSmall`], [`ShmError::NotInitialized`],
    /// [`ShmError::BadMagic`], [`ShmError::LayoutVersion`],
    /// [`ShmError::Corrupt`] for a file that is not a sound ring;
    /// [`ShmError::Schema`], [`ShmError::EventSize`],
    /// [`ShmError::EventAlign`], [`ShmError::Capacity`] for a ring of
    /// another event type or capacity; [`ShmError::TableFull`] when every
    /// consumer entry is taken; [`ShmError::NotInRing`] or
    /// [`ShmError::JoinTimeout`] for a [`JoinAt::Sequence`] join;
    /// [`ShmError::InvalidOption`] for a batch size of 0, a timeout under
    /// 2 ms or a negative start.
    pub fn open(path: impl AsRef<Path>, options: &ShmConsumerOptions) -> Result<Self, ShmError> {
        let path = path.as_ref();
        if options.max_batch_size == 0 {
            return Err(ShmError::option("max_batch_size", "must be at least 1"));
        }
        if let JoinAt::Sequence(sequence) = options.join_at {
            if sequence < 0 {
                return Err(ShmError::option(
                    "join_at",
                    format!("sequence {sequence} is negative"),
                ));
            }
        }
        let producer_timeout_ns = timeout_ns(options.liveness_timeout, "liveness_timeout")?;
        let mapping = mapping::open(path, options.lock_memory)?;
        let geometry = validate::<E>(&mapping, options.capacity)?;
        let memory = Arc::new(RingMemory::new(mapping, geometry));
        let view = memory.view();
        // An evicted entry is reused once silent for the producer's
        // timeout (recorded in the header).
        let reuse_after = protocol::producer_timeout_ns(view);
        // This consumer must look dead to nobody: beat well within the
        // producer's timeout, and wait for well over the producer's beat.
        let producer_beat = Duration::from_nanos(protocol::producer_heartbeat_ns(view));
        if options.liveness_timeout < producer_beat.saturating_mul(2) {
            return Err(ShmError::option(
                "liveness_timeout",
                format!(
                    "{:?} is under twice the producer's heartbeat interval ({producer_beat:?})",
                    options.liveness_timeout
                ),
            ));
        }
        let own_timeout = options
            .liveness_timeout
            .min(Duration::from_nanos(reuse_after));
        let beat = interval(options.heartbeat_interval, own_timeout);
        if Duration::from_nanos(reuse_after) < beat.saturating_mul(2) {
            return Err(ShmError::option(
                "heartbeat_interval",
                format!(
                    "{beat:?} is over half the producer's liveness timeout ({:?}): it would be evicted",
                    Duration::from_nanos(reuse_after)
                ),
            ));
        }
        let now = monotonic_ns();
        let mut core = ConsumerCore::join(
            view,
            options.join_at,
            u64::from(std::process::id()),
            now,
            reuse_after,
        )
        .map_err(|failure| join_error(failure, geometry))?;
        let heartbeat = Heartbeat::start(Arc::clone(&memory), beat, Beat::Consumer(core.index));
        let heartbeat = match heartbeat {
            Ok(heartbeat) => heartbeat,
            Err(error) => {
                core.leave(view);
                return Err(error);
            }
        };
        let deadline = Instant::now() + options.join_timeout;
        loop {
            match core.finish_join(view) {
                Ok(()) => break,
                Err(JoinFailure::Pending) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(JoinFailure::Pending) => {
                    core.leave(view);
                    return Err(ShmError::JoinTimeout);
                }
                Err(failure) => return Err(join_error(failure, geometry)),
            }
        }
        Ok(Self {
            core,
            memory,
            producer_timeout_ns,
            max_batch: options.max_batch_size,
            idle_polls: 0,
            handled: 0,
            left: false,
            _heartbeat: heartbeat,
            _event: PhantomData,
        })
    }

    /// The next sequence this consumer will handle.
    pub fn next_sequence(&self) -> i64 {
        self.core.next
    }

    /// Events handled so far.
    pub fn events_handled(&self) -> u64 {
        self.handled
    }

    /// Handles what is published (up to the batch size), without waiting.
    ///
    /// # Errors
    ///
    /// [`ConsumeError::Evicted`] when the producer evicted this consumer;
    /// [`ConsumeError::ProducerDead`] when nothing is published and the
    /// producer's heartbeat has been silent for the liveness timeout
    /// (looked at every 64 idle polls).
    pub fn poll<H: EventHandler<E> + ?Sized>(
        &mut self,
        handler: &mut H,
    ) -> Result<ShmPollState, ConsumeError> {
        self.idle_polls = self.idle_polls.wrapping_add(1);
        let check = self.idle_polls % 64 == 0;
        self.poll_checked(handler, check)
    }

    fn poll_checked<H: EventHandler<E> + ?Sized>(
        &mut self,
        handler: &mut H,
        check_liveness: bool,
    ) -> Result<ShmPollState, ConsumeError> {
        // Disjoint borrows of the fields (no `Arc` clone: two atomic
        // read-modify-writes a poll).
        let view = self.memory.view();
        match self.core.poll(view, handler, self.max_batch) {
            Polled::Handled(count) => {
                self.handled += count as u64;
                self.idle_polls = 0;
                Ok(ShmPollState::Handled(count))
            }
            Polled::Evicted | Polled::Overrun => Err(ConsumeError::Evicted {
                last_handled: self.core.next - 1,
            }),
            Polled::Idle => {
                if !check_liveness {
                    return Ok(ShmPollState::Idle);
                }
                if self.core.is_evicted(view) {
                    return Err(ConsumeError::Evicted {
                        last_handled: self.core.next - 1,
                    });
                }
                if self.core.is_drained(view) {
                    return Ok(ShmPollState::Closed);
                }
                let silent = monotonic_ns().saturating_sub(ConsumerCore::producer_heartbeat(view));
                if silent > self.producer_timeout_ns {
                    // One more look: the producer may have published or
                    // closed just before it stopped.
                    return match self.core.poll(view, handler, self.max_batch) {
                        Polled::Handled(count) => {
                            self.handled += count as u64;
                            Ok(ShmPollState::Handled(count))
                        }
                        _ if self.core.is_drained(view) => Ok(ShmPollState::Closed),
                        _ => Err(ConsumeError::ProducerDead {
                            last_handled: self.core.next - 1,
                        }),
                    };
                }
                Ok(ShmPollState::Idle)
            }
        }
    }

    /// Handles events until the producer closes the ring and every event
    /// it published is handled, waiting with `wait` in between. Calls the
    /// handler's `on_start` first and `on_shutdown` last (also on an
    /// error). Returns the number of events handled in this call.
    ///
    /// # Errors
    ///
    /// As [`ShmConsumer::poll`]: the producer died or evicted this
    /// consumer.
    pub fn run<H: EventHandler<E> + ?Sized, W: CrossProcessWait>(
        &mut self,
        handler: &mut H,
        wait: &W,
    ) -> Result<u64, ConsumeError> {
        let before = self.handled;
        handler.on_start();
        let result = self.run_loop(handler, wait);
        handler.on_shutdown();
        result.map(|()| self.handled - before)
    }

    fn run_loop<H: EventHandler<E> + ?Sized, W: CrossProcessWait>(
        &mut self,
        handler: &mut H,
        wait: &W,
    ) -> Result<(), ConsumeError> {
        let mut check = true;
        loop {
            match self.poll_checked(handler, check)? {
                ShmPollState::Handled(_) => check = false,
                ShmPollState::Closed => return Ok(()),
                ShmPollState::Idle => {
                    let view = self.memory.view();
                    let next = self.core.next;
                    let stamp = view.stamp(next);
                    // Waits for the next stamp, or LIVENESS_CHECK, then
                    // polls (with the liveness checks after a timeout).
                    let ready = wait.wait_until(Some(LIVENESS_CHECK), || {
                        (stamp.load(Ordering::Relaxed) as i64 >= next).then_some(())
                    });
                    check = ready.is_none();
                }
            }
        }
    }
}

impl<E: ShmEvent> Drop for ShmConsumer<E> {
    fn drop(&mut self) {
        if !self.left {
            self.left = true;
            self.core.leave(self.memory.view());
        }
    }
}

fn join_error(failure: JoinFailure, geometry: Geometry) -> ShmError {
    match failure {
        JoinFailure::TableFull => ShmError::TableFull {
            max_consumers: geometry.max_consumers,
        },
        JoinFailure::NotInRing { requested, oldest } => ShmError::NotInRing { requested, oldest },
        JoinFailure::Pending => ShmError::JoinTimeout,
    }
}

/// The wait strategies that work across processes: they poll shared
/// memory ([`BusySpin`], [`Yielding`], [`Sleeping`]). [`Blocking`](crate::Blocking)
/// sleeps on an in-process condition variable that another process cannot
/// signal, so it is not one of them.
pub trait CrossProcessWait: WaitStrategy + sealed::Sealed {}

impl CrossProcessWait for BusySpin {}
impl CrossProcessWait for Yielding {}
impl CrossProcessWait for Sleeping {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::BusySpin {}
    impl Sealed for crate::Yielding {}
    impl Sealed for crate::Sleeping {}
}

use std::sync::atomic::Ordering;
