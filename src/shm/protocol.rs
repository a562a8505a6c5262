//! The cross-process protocol over a [`View`]: the producer's gate, its
//! eviction of dead consumers, a consumer's join, poll and leave. No
//! threads, no clock reads and no files here: time comes in as `now`
//! arguments, so the loom models and Miri run this code as it is, over a
//! heap-backed ring with the file's layout.
//!
//! Orderings (the in-process table, plus what crossing processes adds):
//!
//! | operation | ordering | why |
//! |---|---|---|
//! | producer writes the event's words, then the stamp | `Relaxed` words, `Release` stamp | a consumer that acquires the stamp sees the event |
//! | consumer reads the stamp | `Acquire` | pairs with the stamp's release |
//! | consumer stores its sequence after handling | `Release` | the producer may reuse the slots |
//! | producer reads the table (state, then sequence) | `SeqCst` fence, then `Acquire` | pairs with the consumer's release; the fence orders it against a joiner's registration (see `join`) |
//! | producer stores its cursor hint, then fences | `Relaxed` + `SeqCst` fence | a joiner that the refresh did not see sees every stamp that refresh allowed for |
//! | eviction: state `EVICTED`, then later event words | `SeqCst` CAS + `Release` fence | a consumer whose copy read an overwritten word then sees `EVICTED` (its acquire fence after the copy) |
//! | joiner: sequence, `ACTIVE`, version bump, fence, then stamps | `SeqCst` | the store-load (Dekker) case against the producer's refresh |

use crate::handler::EventHandler;
use crate::loom::sync::atomic::{fence, AtomicU64, Ordering};

use super::layout::{
    entry_generation, entry_state, entry_word, read_event, slot_words_for, write_event,
    ConsumerEntry, View, D2_HEARTBEAT_NS, D2_TIMEOUT_NS, ENTRY_ACTIVE, ENTRY_EVICTED, ENTRY_FREE,
    ENTRY_RESERVED, PRODUCER_CLOSED, P_CURSOR_HINT, P_EVICTIONS, P_FINAL_CURSOR, P_HEARTBEAT,
    P_STATE, T_ACK, T_VERSION,
};

/// The producer's side: its next sequence and its cached gate.
#[derive(Debug)]
pub(crate) struct ProducerCore {
    /// The next sequence to claim (and publish: one producer).
    pub(crate) next: i64,
    /// The lowest sequence a gating consumer had finished, at the last
    /// refresh (or the last published, with no consumer).
    cached_gate: i64,
    /// The table version folded into `cached_gate`.
    seen_version: u64,
    /// Consumers this producer evicted.
    pub(crate) evictions: u64,
}

impl ProducerCore {
    pub(crate) fn new() -> Self {
        Self {
            next: 0,
            cached_gate: -1,
            seen_version: u64::MAX,
            evictions: 0,
        }
    }

    /// Whether `count` more sequences fit without overwriting a slot a
    /// gating consumer has not finished with. The fast path: one load of
    /// the table version (a line written only when consumers join or
    /// leave) and a compare.
    #[inline(always)]
    pub(crate) fn has_room(&mut self, view: &View<'_>, count: i64) -> bool {
        let wrap_point = self.next + count - 1 - view.geometry.capacity as i64;
        if wrap_point <= self.cached_gate
            && view.table(T_VERSION).load(Ordering::Relaxed) == self.seen_version
        {
            return true;
        }
        self.refresh(view);
        wrap_point <= self.cached_gate
    }

    /// Re-reads the consumer table into the cached gate and acknowledges
    /// the table version it saw.
    #[cold]
    #[inline(never)]
    pub(crate) fn refresh(&mut self, view: &View<'_>) {
        let last_published = self.next - 1;
        // The hint before the fence: a joiner this refresh does not see
        // reads a hint at least this new (see `join`).
        view.producer(P_CURSOR_HINT)
            .store(last_published as u64, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let version = view.table(T_VERSION).load(Ordering::SeqCst);
        self.cached_gate = gate(view, last_published);
        self.seen_version = version;
        view.table(T_ACK).store(version, Ordering::Release);
    }

    /// Evicts every active consumer that holds the producer back (has not
    /// finished the slot `count` more sequences would reuse) and whose
    /// heartbeat is older than `timeout_ns` at `now`. Returns how many.
    pub(crate) fn evict_stale(
        &mut self,
        view: &View<'_>,
        count: i64,
        now: u64,
        timeout_ns: u64,
    ) -> u64 {
        let wrap_point = self.next + count - 1 - view.geometry.capacity as i64;
        let mut evicted = 0;
        for entry in view.entries {
            let state = entry.state.load(Ordering::Acquire);
            if entry_state(state) != ENTRY_ACTIVE {
                continue;
            }
            let sequence = entry.sequence.load(Ordering::Acquire) as i64;
            let heartbeat = entry.heartbeat.load(Ordering::Relaxed);
            if sequence >= wrap_point || now.saturating_sub(heartbeat) <= timeout_ns {
                continue;
            }
            let evict = entry_word(entry_generation(state), ENTRY_EVICTED);
            if entry
                .state
                .compare_exchange(state, evict, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                evicted += 1;
            }
        }
        if evicted > 0 {
            // Every event word stored after this fence carries the
            // eviction to a consumer that reads it (see `ConsumerCore`).
            fence(Ordering::Release);
            self.evictions += evicted;
            view.producer(P_EVICTIONS)
                .store(self.evictions, Ordering::Relaxed);
            self.refresh(view);
        }
        evicted
    }

    /// Writes `event` into the slot of `sequence` and publishes it. The
    /// caller claimed `sequence` (it is `self.next`, and `has_room` said yes).
    #[inline(always)]
    pub(crate) fn write_and_publish<E: bytemuck::Pod>(
        &mut self,
        view: &View<'_>,
        sequence: i64,
        event: &E,
    ) {
        debug_assert_eq!(sequence, self.next);
        let slot = view.event_slot::<E>(sequence);
        write_event(&slot[1..], event);
        // Release: the event's words before the stamp.
        slot[0].store(sequence as u64, Ordering::Release);
        self.next = sequence + 1;
    }

    /// Marks the ring closed after `self.next - 1`: consumers drain up to
    /// it and stop.
    pub(crate) fn close(&self, view: &View<'_>) {
        let last = self.next - 1;
        view.producer(P_CURSOR_HINT)
            .store(last as u64, Ordering::Relaxed);
        view.producer(P_FINAL_CURSOR)
            .store(last as u64, Ordering::Relaxed);
        view.producer(P_STATE)
            .store(PRODUCER_CLOSED, Ordering::Release);
    }
}

/// Where a joining consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinAt {
    /// After the last event published when it joins (the default): it sees
    /// every event published from then on.
    #[default]
    Cursor,
    /// At this sequence, if the ring still holds it (or has not yet
    /// published it). Needs the producer to acknowledge the new gate, so
    /// the join waits for the producer's next claim (bounded).
    Sequence(i64),
}

/// Why a join did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinFailure {
    TableFull,
    NotInRing {
        requested: i64,
        oldest: i64,
    },
    /// An explicit join waits for the acknowledgement: not yet.
    Pending,
}

/// A consumer's side: its entry, its generation and its next sequence.
#[derive(Debug)]
pub(crate) struct ConsumerCore {
    pub(crate) index: usize,
    generation: u64,
    /// The next sequence to handle.
    pub(crate) next: i64,
    /// For an explicit join: the table version to see acknowledged.
    pending_version: Option<u64>,
}

/// What one `poll` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Polled {
    /// This many events were handled (at least one).
    Handled(usize),
    /// The next event is not published yet.
    Idle,
    /// The consumer was evicted (its state changed).
    Evicted,
    /// The slot holds a later event than the one expected: the producer
    /// did not wait for this consumer.
    Overrun,
}

impl ConsumerCore {
    /// Takes an entry (a free one, or an evicted one whose heartbeat has
    /// been silent for `timeout_ns`) and registers it in the producer's
    /// gate, then finds where to start. For `JoinAt::Sequence` the join
    /// completes in `finish_join` once the producer acknowledged it.
    pub(crate) fn join(
        view: &View<'_>,
        at: JoinAt,
        pid: u64,
        now: u64,
        timeout_ns: u64,
    ) -> Result<Self, JoinFailure> {
        let (index, generation) = reserve(view, now, timeout_ns)?;
        let entry = &view.entries[index];
        let hint = view.producer(P_CURSOR_HINT).load(Ordering::Acquire) as i64;
        // Start gating conservatively: at the hint for a cursor join (the
        // start found below is after it), just before the start for an
        // explicit one.
        let initial = match at {
            JoinAt::Cursor => hint,
            JoinAt::Sequence(sequence) => sequence.saturating_sub(1),
        };
        entry.sequence.store(initial as u64, Ordering::Relaxed);
        entry.heartbeat.store(now, Ordering::Relaxed);
        entry.pid.store(pid, Ordering::Relaxed);
        entry
            .state
            .store(entry_word(generation, ENTRY_ACTIVE), Ordering::SeqCst);
        let version = view.table(T_VERSION).fetch_add(1, Ordering::SeqCst) + 1;
        // Dekker with the producer's refresh (hint store, fence, table
        // read): either that refresh saw this entry, or this fence comes
        // after its fence and the loads below see every stamp it published
        // before, so the start is past anything its gate lets it reuse.
        fence(Ordering::SeqCst);
        match at {
            JoinAt::Cursor => {
                let newest = newest_stamp(view).max(hint);
                let start = newest + 1;
                entry.sequence.store((start - 1) as u64, Ordering::Release);
                entry.joined.store(generation, Ordering::Release);
                Ok(Self {
                    index,
                    generation,
                    next: start,
                    pending_version: None,
                })
            }
            JoinAt::Sequence(sequence) => Ok(Self {
                index,
                generation,
                next: sequence,
                pending_version: Some(version),
            }),
        }
    }

    /// Completes an explicit join: `Pending` until the producer has
    /// refreshed its gate with this entry in it; then checks that the
    /// ring still holds the start (and leaves the table if not).
    pub(crate) fn finish_join(&mut self, view: &View<'_>) -> Result<(), JoinFailure> {
        let Some(version) = self.pending_version else {
            return Ok(());
        };
        if view.table(T_ACK).load(Ordering::Acquire) < version {
            return Err(JoinFailure::Pending);
        }
        // Every write the producer made before acknowledging is visible
        // (acquire), and every write after respects this entry.
        let stamp = view.stamp(self.next).load(Ordering::Acquire) as i64;
        if stamp > self.next {
            self.leave(view);
            let capacity = view.geometry.capacity as i64;
            let oldest = (newest_stamp(view) - capacity + 1).max(0);
            return Err(JoinFailure::NotInRing {
                requested: self.next,
                oldest,
            });
        }
        self.pending_version = None;
        self.entry(view)
            .joined
            .store(self.generation, Ordering::Release);
        Ok(())
    }

    fn entry<'a>(&self, view: &View<'a>) -> &'a ConsumerEntry {
        &view.entries[self.index]
    }

    /// Whether the producer has evicted this consumer (or the entry was
    /// taken over).
    pub(crate) fn is_evicted(&self, view: &View<'_>) -> bool {
        self.entry(view).state.load(Ordering::Acquire) != entry_word(self.generation, ENTRY_ACTIVE)
    }

    /// Handles the events published from `next` on, up to `max_batch` and
    /// no further than the ring's last slot (so a batch is one contiguous
    /// run of slots, walked without a bounds check per event): copies each
    /// out of its slot, checks that the producer has not evicted this
    /// consumer meanwhile, hands the copy to `handler`, then releases the
    /// batch.
    #[inline]
    pub(crate) fn poll<E: bytemuck::Pod, H: EventHandler<E> + ?Sized>(
        &mut self,
        view: &View<'_>,
        handler: &mut H,
        max_batch: usize,
    ) -> Polled {
        let first = self.next;
        let words = slot_words_for(std::mem::size_of::<E>());
        debug_assert_eq!(words, view.geometry.slot_words);
        let start = (first & view.geometry.mask()) as usize;
        let limit = max_batch.min(view.geometry.capacity - start);
        let run = &view.slots[start * words..(start + limit) * words];
        let mut available = 0usize;
        for slot in run.chunks_exact(words) {
            let sequence = first + available as i64;
            // Acquire: pairs with the stamp's release; the event's words
            // are visible.
            let stamp = slot[0].load(Ordering::Acquire) as i64;
            if stamp != sequence {
                if stamp > sequence && available == 0 {
                    return if self.is_evicted(view) {
                        Polled::Evicted
                    } else {
                        Polled::Overrun
                    };
                }
                break;
            }
            available += 1;
        }
        if available == 0 {
            return Polled::Idle;
        }
        let last = first + available as i64 - 1;
        handler.on_batch_start(available as i64, available as i64);
        let state = &self.entry(view).state;
        let active = entry_word(self.generation, ENTRY_ACTIVE);
        for (sequence, slot) in (first..).zip(run[..available * words].chunks_exact(words)) {
            let event: E = read_event(&slot[1..]);
            // Acquire: if the copy read a word the producer stored after
            // evicting this consumer, the state below shows the eviction
            // (the producer fenced between the two).
            fence(Ordering::Acquire);
            if state.load(Ordering::Relaxed) != active {
                self.release(view, sequence - 1);
                return Polled::Evicted;
            }
            handler.on_event(&event, sequence, sequence == last);
        }
        self.release(view, last);
        Polled::Handled(available)
    }

    fn release(&mut self, view: &View<'_>, last_handled: i64) {
        self.next = last_handled + 1;
        // Release: the slots up to here were read; the producer may reuse
        // them.
        self.entry(view)
            .sequence
            .store(last_handled as u64, Ordering::Release);
    }

    /// Whether the producer closed the ring and everything it published
    /// has been handled.
    pub(crate) fn is_drained(&self, view: &View<'_>) -> bool {
        if view.producer(P_STATE).load(Ordering::Acquire) != PRODUCER_CLOSED {
            return false;
        }
        let last = view.producer(P_FINAL_CURSOR).load(Ordering::Relaxed) as i64;
        self.next > last
    }

    /// The producer's last heartbeat.
    pub(crate) fn producer_heartbeat(view: &View<'_>) -> u64 {
        view.producer(P_HEARTBEAT).load(Ordering::Relaxed)
    }

    /// Leaves the gate (frees the entry if it is still this consumer's).
    pub(crate) fn leave(&mut self, view: &View<'_>) {
        let entry = self.entry(view);
        for state in [ENTRY_ACTIVE, ENTRY_EVICTED] {
            if entry
                .state
                .compare_exchange(
                    entry_word(self.generation, state),
                    entry_word(self.generation, ENTRY_FREE),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                view.table(T_VERSION).fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Takes an entry: free, or evicted and silent for `timeout_ns`.
fn reserve(view: &View<'_>, now: u64, timeout_ns: u64) -> Result<(usize, u64), JoinFailure> {
    for (index, entry) in view.entries.iter().enumerate() {
        let state = entry.state.load(Ordering::Acquire);
        let reusable = match entry_state(state) {
            ENTRY_FREE => true,
            ENTRY_EVICTED => {
                now.saturating_sub(entry.heartbeat.load(Ordering::Relaxed)) > timeout_ns
            }
            _ => false,
        };
        if !reusable {
            continue;
        }
        let generation = entry_generation(state).wrapping_add(1) & (u64::MAX >> 8);
        if entry
            .state
            .compare_exchange(
                state,
                entry_word(generation, ENTRY_RESERVED),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            return Ok((index, generation));
        }
    }
    Err(JoinFailure::TableFull)
}

/// The highest stamp in the ring: the last sequence published (or a
/// negative initial stamp if none was). Reads every slot: a join's cost,
/// not an event's.
fn newest_stamp(view: &View<'_>) -> i64 {
    (0..view.geometry.capacity as i64)
        .map(|index| view.stamp(index).load(Ordering::Acquire) as i64)
        .max()
        .unwrap_or(-1)
        .max(-1)
}

/// The heartbeat word of the producer (for its heartbeat thread).
pub(crate) fn producer_heartbeat_word<'a>(view: &View<'a>) -> &'a AtomicU64 {
    view.producer(P_HEARTBEAT)
}

/// The heartbeat word of consumer entry `index`.
pub(crate) fn consumer_heartbeat_word<'a>(view: &View<'a>, index: usize) -> &'a AtomicU64 {
    &view.entries[index].heartbeat
}

/// The lowest sequence an active consumer has finished, or
/// `last_published` with none.
fn gate(view: &View<'_>, last_published: i64) -> i64 {
    let mut gate = last_published;
    for entry in view.entries {
        let state = entry.state.load(Ordering::Acquire);
        if entry_state(state) == ENTRY_ACTIVE {
            // Acquire: pairs with the consumer's release of its sequence;
            // it read those slots before.
            let sequence = entry.sequence.load(Ordering::Acquire) as i64;
            gate = gate.min(sequence);
        }
    }
    gate
}

/// Slots a producer whose next sequence is `next` could fill now.
pub(crate) fn free_slots(view: &View<'_>, next: i64) -> usize {
    let used = (next - 1 - gate(view, next - 1)).max(0) as usize;
    view.geometry.capacity.saturating_sub(used)
}

/// Consumers in the gate whose join is complete (they know where they
/// start).
pub(crate) fn active_consumers(view: &View<'_>) -> usize {
    view.entries
        .iter()
        .filter(|entry| {
            let state = entry.state.load(Ordering::Acquire);
            entry_state(state) == ENTRY_ACTIVE
                && entry.joined.load(Ordering::Acquire) == entry_generation(state)
        })
        .count()
}

/// The producer's heartbeat interval recorded in the header.
pub(crate) fn producer_heartbeat_ns(view: &View<'_>) -> u64 {
    view.header.describe2[D2_HEARTBEAT_NS].load(Ordering::Relaxed)
}

/// The producer's liveness timeout recorded in the header (how long an
/// evicted entry stays reserved for its owner).
pub(crate) fn producer_timeout_ns(view: &View<'_>) -> u64 {
    view.header.describe2[D2_TIMEOUT_NS].load(Ordering::Relaxed)
}
