//! The shared-memory ring's layout: what the file holds, where, and the
//! checks that turn a file into a [`View`].
//!
//! ```text
//! offset 0          Header: line 0 immutable description, line 1 the
//!                   producer's liveness, line 2 the table version and its
//!                   acknowledgement, line 3 the schema name
//! HEADER_BYTES      ConsumerEntry × max_consumers (128 bytes each: line A
//!                   sequence + state, line B heartbeat + pid)
//! slots_offset      slot × capacity, slot_bytes each (1, 2, 4 or 8 words,
//!                   else whole lines: `slot_words_for`): word 0 the
//!                   stamp, then the event's bytes in words
//! ```
//!
//! Every field is an atomic word, so no access to shared memory is a data
//! race whatever a peer does. Sizes and offsets come from the local
//! `Geometry` (computed from the event type and the validated capacity),
//! never from a shared field read later.

use std::mem::size_of;

use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// "TICKRSHM", little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"TICKRSHM");
/// Bumped whenever the layout below changes.
pub(crate) const LAYOUT_VERSION: u64 = 2;
/// Bytes the schema name may take in the header.
pub const MAX_SCHEMA_NAME: usize = 56;
/// The most consumer entries a ring may have.
pub const MAX_CONSUMERS: usize = 1024;
/// The largest capacity a shared ring may have (2^30 slots).
pub const MAX_SHM_CAPACITY: usize = 1 << 30;
/// The largest event a shared ring carries.
pub const MAX_EVENT_SIZE: usize = 1 << 16;

const WORDS_PER_LINE: usize = 8;

/// One 64-byte line of the header, as atomic words.
pub(crate) type Line = [AtomicU64; WORDS_PER_LINE];

/// The header: four 64-byte lines (each 128-byte pair apart where a
/// writer differs, so the adjacent-line prefetcher does not pair them).
#[repr(C, align(128))]
pub(crate) struct Header {
    /// Line 0, written once before `magic`: magic, layout version, capacity,
    /// slot bytes, event size, event align, schema version, max consumers.
    pub(crate) describe: Line,
    /// Line 0b: file length, the creator's liveness timeout in ns.
    pub(crate) describe2: Line,
    /// Line 1 (the producer's): heartbeat ns, state, pid, cursor hint,
    /// evictions, final cursor.
    pub(crate) producer: Line,
    _pad1: Line,
    /// Line 2: table version (bumped by joiners and leavers), the version
    /// the producer last folded into its gate.
    pub(crate) table: Line,
    _pad2: Line,
    /// Line 3: schema name length, then the name's bytes.
    pub(crate) schema: Line,
    _pad3: Line,
}

// Word indices into the header's lines.
pub(crate) const D_MAGIC: usize = 0;
pub(crate) const D_VERSION: usize = 1;
pub(crate) const D_CAPACITY: usize = 2;
pub(crate) const D_SLOT_BYTES: usize = 3;
pub(crate) const D_EVENT_SIZE: usize = 4;
pub(crate) const D_EVENT_ALIGN: usize = 5;
pub(crate) const D_SCHEMA_VERSION: usize = 6;
pub(crate) const D_MAX_CONSUMERS: usize = 7;
pub(crate) const D2_FILE_BYTES: usize = 0;
pub(crate) const D2_TIMEOUT_NS: usize = 1;
pub(crate) const D2_HEARTBEAT_NS: usize = 2;
pub(crate) const P_HEARTBEAT: usize = 0;
pub(crate) const P_STATE: usize = 1;
pub(crate) const P_PID: usize = 2;
pub(crate) const P_CURSOR_HINT: usize = 3;
pub(crate) const P_EVICTIONS: usize = 4;
pub(crate) const P_FINAL_CURSOR: usize = 5;
pub(crate) const T_VERSION: usize = 0;
pub(crate) const T_ACK: usize = 1;

/// `P_STATE` values.
pub(crate) const PRODUCER_OPEN: u64 = 1;
pub(crate) const PRODUCER_CLOSED: u64 = 2;

pub(crate) const HEADER_BYTES: usize = size_of::<Header>();

/// One consumer's entry: line A is read by the producer's gate (the
/// sequence the consumer has finished, and its state), line B is written
/// by the consumer's heartbeat.
#[repr(C, align(128))]
pub(crate) struct ConsumerEntry {
    /// The last sequence this consumer finished, as `u64` bits of an `i64`.
    pub(crate) sequence: AtomicU64,
    /// `generation << 8 | state` (see the `ENTRY_*` states).
    pub(crate) state: AtomicU64,
    /// The generation whose join is complete (its start decided): what
    /// `active_consumers` counts, so a producer that waits for consumers
    /// publishes only once they know where they start.
    pub(crate) joined: AtomicU64,
    _pad_a: [AtomicU64; WORDS_PER_LINE - 3],
    /// When the consumer's heartbeat last ran, ns of `CLOCK_MONOTONIC`.
    pub(crate) heartbeat: AtomicU64,
    pub(crate) pid: AtomicU64,
    _pad_b: [AtomicU64; WORDS_PER_LINE - 2],
}

pub(crate) const ENTRY_BYTES: usize = size_of::<ConsumerEntry>();

/// Entry states (low byte of `state`).
pub(crate) const ENTRY_FREE: u64 = 0;
/// Taken by a joiner that has not yet set its sequence.
pub(crate) const ENTRY_RESERVED: u64 = 1;
/// Gates the producer.
pub(crate) const ENTRY_ACTIVE: u64 = 2;
/// Evicted by the producer after its heartbeat stopped.
pub(crate) const ENTRY_EVICTED: u64 = 3;

pub(crate) fn entry_state(word: u64) -> u64 {
    word & 0xff
}

pub(crate) fn entry_word(generation: u64, state: u64) -> u64 {
    (generation << 8) | state
}

pub(crate) fn entry_generation(word: u64) -> u64 {
    word >> 8
}

/// Words of a slot for an event of `event_size` bytes: the stamp and the
/// event's words, rounded up to a power of two when they fit in a 64-byte
/// line (a `u64` event: 2 words, four slots to a line; no slot straddles a
/// line), else to whole lines. The in-process ring's rounding. A constant
/// for a given event type, so the copies below unroll.
pub(crate) const fn slot_words_for(event_size: usize) -> usize {
    let words = 1 + event_size.div_ceil(8);
    if words <= WORDS_PER_LINE {
        words.next_power_of_two()
    } else {
        words.div_ceil(WORDS_PER_LINE) * WORDS_PER_LINE
    }
}

/// Words an event of type `E` takes.
const fn event_words<E>() -> usize {
    std::mem::size_of::<E>().div_ceil(8)
}

/// Where everything is, from the event type and the capacity alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: usize,
    pub(crate) max_consumers: usize,
    pub(crate) event_size: usize,
    pub(crate) event_align: usize,
    /// Words of one slot (stamp + event + padding to 64 bytes).
    pub(crate) slot_words: usize,
    pub(crate) slots_offset: usize,
    pub(crate) file_bytes: usize,
}

impl Geometry {
    /// `None` when the sizes overflow or exceed the limits (the caller
    /// checked the limits for a clear error first).
    pub(crate) fn new(
        capacity: usize,
        max_consumers: usize,
        event_size: usize,
        event_align: usize,
    ) -> Option<Self> {
        if capacity == 0
            || !capacity.is_power_of_two()
            || capacity > MAX_SHM_CAPACITY
            || max_consumers == 0
            || max_consumers > MAX_CONSUMERS
            || event_size > MAX_EVENT_SIZE
            || event_align > 64
        {
            return None;
        }
        let slot_bytes = slot_words_for(event_size) * 8;
        let slots_offset = HEADER_BYTES + max_consumers * ENTRY_BYTES;
        let file_bytes = slots_offset.checked_add(capacity.checked_mul(slot_bytes)?)?;
        Some(Self {
            capacity,
            max_consumers,
            event_size,
            event_align,
            slot_words: slot_bytes / 8,
            slots_offset,
            file_bytes,
        })
    }

    pub(crate) fn slot_bytes(&self) -> usize {
        self.slot_words * 8
    }

    pub(crate) fn mask(&self) -> i64 {
        self.capacity as i64 - 1
    }
}

/// The ring's memory as typed references: the header, the consumer table
/// and the slots' words. Both the file mapping and the heap instance (for
/// loom and Miri) are read through this one type.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) header: &'a Header,
    pub(crate) entries: &'a [ConsumerEntry],
    pub(crate) slots: &'a [AtomicU64],
    pub(crate) geometry: Geometry,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

impl<'a> View<'a> {
    /// The words of the slot for `sequence` (stamp first).
    #[inline(always)]
    pub(crate) fn slot(&self, sequence: i64) -> &'a [AtomicU64] {
        let index = (sequence & self.geometry.mask()) as usize;
        let start = index * self.geometry.slot_words;
        &self.slots[start..start + self.geometry.slot_words]
    }

    #[inline(always)]
    pub(crate) fn stamp(&self, sequence: i64) -> &'a AtomicU64 {
        &self.slot(sequence)[0]
    }

    /// The slot for `sequence` of a ring of `E` (whose geometry was made
    /// for `E`, as every `View` of a typed handle is): the slot's length
    /// is a constant, so the event copies unroll and need no check per
    /// word.
    #[inline(always)]
    pub(crate) fn event_slot<E>(&self, sequence: i64) -> &'a [AtomicU64] {
        let words = slot_words_for(std::mem::size_of::<E>());
        debug_assert_eq!(words, self.geometry.slot_words);
        let start = (sequence & self.geometry.mask()) as usize * words;
        &self.slots[start..start + words]
    }

    pub(crate) fn producer(&self, word: usize) -> &'a AtomicU64 {
        &self.header.producer[word]
    }

    pub(crate) fn table(&self, word: usize) -> &'a AtomicU64 {
        &self.header.table[word]
    }

    /// Writes the header's description (all but `magic`), every stamp as
    /// "not yet published" and every entry free. The caller publishes the
    /// ring by storing `magic` last.
    pub(crate) fn initialize(
        &self,
        schema_name: &str,
        schema_version: u32,
        timeout_ns: u64,
        heartbeat_ns: u64,
        pid: u64,
        now: u64,
    ) {
        let g = self.geometry;
        let d = &self.header.describe;
        d[D_VERSION].store(LAYOUT_VERSION, Ordering::Relaxed);
        d[D_CAPACITY].store(g.capacity as u64, Ordering::Relaxed);
        d[D_SLOT_BYTES].store(g.slot_bytes() as u64, Ordering::Relaxed);
        d[D_EVENT_SIZE].store(g.event_size as u64, Ordering::Relaxed);
        d[D_EVENT_ALIGN].store(g.event_align as u64, Ordering::Relaxed);
        d[D_SCHEMA_VERSION].store(u64::from(schema_version), Ordering::Relaxed);
        d[D_MAX_CONSUMERS].store(g.max_consumers as u64, Ordering::Relaxed);
        let d2 = &self.header.describe2;
        d2[D2_FILE_BYTES].store(g.file_bytes as u64, Ordering::Relaxed);
        d2[D2_TIMEOUT_NS].store(timeout_ns, Ordering::Relaxed);
        d2[D2_HEARTBEAT_NS].store(heartbeat_ns, Ordering::Relaxed);
        store_name(&self.header.schema, schema_name);
        let p = &self.header.producer;
        p[P_HEARTBEAT].store(now, Ordering::Relaxed);
        p[P_STATE].store(PRODUCER_OPEN, Ordering::Relaxed);
        p[P_PID].store(pid, Ordering::Relaxed);
        p[P_CURSOR_HINT].store(-1i64 as u64, Ordering::Relaxed);
        p[P_EVICTIONS].store(0, Ordering::Relaxed);
        p[P_FINAL_CURSOR].store(-1i64 as u64, Ordering::Relaxed);
        self.header.table[T_VERSION].store(0, Ordering::Relaxed);
        self.header.table[T_ACK].store(0, Ordering::Relaxed);
        for entry in self.entries {
            entry.sequence.store(-1i64 as u64, Ordering::Relaxed);
            entry
                .state
                .store(entry_word(0, ENTRY_FREE), Ordering::Relaxed);
            entry.joined.store(0, Ordering::Relaxed);
            entry.heartbeat.store(0, Ordering::Relaxed);
            entry.pid.store(0, Ordering::Relaxed);
        }
        // Slot `i` holds "sequence i - capacity": not yet published, and
        // below every sequence a consumer will ask for.
        for index in 0..g.capacity {
            let stamp = index as i64 - g.capacity as i64;
            self.stamp(index as i64)
                .store(stamp as u64, Ordering::Relaxed);
        }
    }

    /// Releases the initialized ring to openers.
    pub(crate) fn publish_magic(&self) {
        self.header.describe[D_MAGIC].store(MAGIC, Ordering::Release);
    }
}

/// The schema name stored in the header (lossy if a peer wrote bytes that
/// are not UTF-8).
pub(crate) fn schema_name(header: &Header) -> String {
    load_name(&header.schema)
}

fn store_name(line: &Line, name: &str) {
    let bytes = name.as_bytes();
    debug_assert!(bytes.len() <= MAX_SCHEMA_NAME);
    line[0].store(bytes.len() as u64, Ordering::Relaxed);
    for (word, chunk) in line[1..].iter().zip(bytes.chunks(8)) {
        let mut buffer = [0u8; 8];
        buffer[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(buffer), Ordering::Relaxed);
    }
}

fn load_name(line: &Line) -> String {
    // The length is a peer's word: clamp it to what the line holds.
    let len = (line[0].load(Ordering::Relaxed) as usize).min(MAX_SCHEMA_NAME);
    let mut bytes = Vec::with_capacity(MAX_SCHEMA_NAME);
    for word in &line[1..] {
        bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    bytes.truncate(len);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The event's bytes out of a slot's words (the words after the stamp),
/// with relaxed atomic loads: a racing writer can spoil the copy, never
/// make it undefined behaviour.
#[inline(always)]
pub(crate) fn read_event<E: bytemuck::Pod>(words: &[AtomicU64]) -> E {
    let words = &words[..event_words::<E>()];
    let mut event = E::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut event);
    let (whole, tail) = bytes.split_at_mut(std::mem::size_of::<E>() / 8 * 8);
    for (chunk, word) in whole.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    if !tail.is_empty() {
        let last = words[words.len() - 1].load(Ordering::Relaxed).to_ne_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
    event
}

/// The event's bytes into a slot's words (the words after the stamp), with
/// relaxed atomic stores; the stamp's release store after them publishes
/// them.
#[inline(always)]
pub(crate) fn write_event<E: bytemuck::Pod>(words: &[AtomicU64], event: &E) {
    let words = &words[..event_words::<E>()];
    let bytes = bytemuck::bytes_of(event);
    let (whole, tail) = bytes.split_at(std::mem::size_of::<E>() / 8 * 8);
    for (chunk, word) in whole.chunks_exact(8).zip(words) {
        let mut value = [0u8; 8];
        value.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(value), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        let mut value = [0u8; 8];
        value[..tail.len()].copy_from_slice(tail);
        words[words.len() - 1].store(u64::from_ne_bytes(value), Ordering::Relaxed);
    }
}

/// A heap-backed ring with the file's layout, for loom models, Miri and
/// unit tests: the same `View`, without a file.
#[cfg(test)]
pub(crate) struct HeapRing {
    header: Box<Header>,
    entries: Box<[ConsumerEntry]>,
    slots: Box<[AtomicU64]>,
    geometry: Geometry,
}

#[cfg(test)]
impl HeapRing {
    pub(crate) fn new(geometry: Geometry, schema: &str, version: u32, now: u64) -> Self {
        let header = Box::new(Header {
            describe: new_line(),
            describe2: new_line(),
            producer: new_line(),
            _pad1: new_line(),
            table: new_line(),
            _pad2: new_line(),
            schema: new_line(),
            _pad3: new_line(),
        });
        let entries = (0..geometry.max_consumers)
            .map(|_| ConsumerEntry {
                sequence: AtomicU64::new(0),
                state: AtomicU64::new(0),
                joined: AtomicU64::new(0),
                _pad_a: std::array::from_fn(|_| AtomicU64::new(0)),
                heartbeat: AtomicU64::new(0),
                pid: AtomicU64::new(0),
                _pad_b: std::array::from_fn(|_| AtomicU64::new(0)),
            })
            .collect();
        let slots = (0..geometry.capacity * geometry.slot_words)
            .map(|_| AtomicU64::new(0))
            .collect();
        let ring = Self {
            header,
            entries,
            slots,
            geometry,
        };
        let view = ring.view();
        view.initialize(schema, version, 1_000_000_000, 100_000_000, 0, now);
        view.publish_magic();
        ring
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            header: &self.header,
            entries: &self.entries,
            slots: &self.slots,
            geometry: self.geometry,
        }
    }
}

#[cfg(test)]
fn new_line() -> Line {
    std::array::from_fn(|_| AtomicU64::new(0))
}

// The mapped file is cast to these types: their sizes are part of the
// layout version. (Loom's atomics are larger; its heap rings do not care.)
#[cfg(not(tickring_loom))]
const _: () = {
    assert!(HEADER_BYTES == 512);
    assert!(ENTRY_BYTES == 128);
    assert!(std::mem::align_of::<Header>() == 128);
    assert!(std::mem::align_of::<ConsumerEntry>() == 128);
};
