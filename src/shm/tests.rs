//! The cross-process protocol over a heap-backed ring with the file's
//! layout: what Miri runs (no files, no mmap), and what the handles rely
//! on. The multi-process tests are in `tests/shm.rs`.

use super::layout::{read_event, write_event, Geometry, HeapRing};
use super::protocol::{ConsumerCore, JoinAt, JoinFailure, Polled, ProducerCore};

/// A 24-byte event whose words all derive from its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tick {
    sequence: i64,
    price: i64,
    check: i64,
}

impl Tick {
    fn of(sequence: i64) -> Self {
        Self {
            sequence,
            price: sequence * 3 + 1,
            check: sequence ^ 0x5a5a,
        }
    }
}

const TIMEOUT: u64 = 1_000;

fn ring(capacity: usize, max_consumers: usize) -> HeapRing {
    let geometry = Geometry::new(capacity, max_consumers, 24, 8).expect("valid geometry");
    HeapRing::new(geometry, "test.tick", 1, 0)
}

/// Publishes the next event if there is room.
fn publish(producer: &mut ProducerCore, ring: &HeapRing) -> bool {
    let view = ring.view();
    if !producer.has_room(&view, 1) {
        return false;
    }
    let sequence = producer.next;
    producer.write_and_publish(&view, sequence, &Tick::of(sequence));
    true
}

/// Polls once, checking every event handed over; returns what `poll` said.
fn poll(consumer: &mut ConsumerCore, ring: &HeapRing, seen: &mut Vec<i64>) -> Polled {
    let mut handler = |tick: &Tick, sequence: i64, _end: bool| {
        assert_eq!(*tick, Tick::of(sequence), "event {sequence} whole");
        seen.push(sequence);
    };
    consumer.poll(&ring.view(), &mut handler, 1024)
}

#[test]
fn every_event_in_order_across_wrap_around() {
    let ring = ring(4, 2);
    let mut producer = ProducerCore::new();
    let mut consumer = ConsumerCore::join(&ring.view(), JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 50 {
        while producer.next < 50 && publish(&mut producer, &ring) {}
        poll(&mut consumer, &ring, &mut seen);
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[test]
fn the_producer_waits_for_a_consumer_and_not_without_one() {
    let ring = ring(4, 1);
    let mut producer = ProducerCore::new();
    // No consumer: nothing gates (a broadcast ring).
    for _ in 0..10 {
        assert!(publish(&mut producer, &ring));
    }
    let mut consumer = ConsumerCore::join(&ring.view(), JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    assert_eq!(consumer.next, 10);
    for _ in 0..4 {
        assert!(publish(&mut producer, &ring));
    }
    assert!(!publish(&mut producer, &ring), "a full ring waits");
    let mut seen = Vec::new();
    // A batch ends at the ring's last slot: 10 and 11 (slots 2, 3), then
    // 12 and 13 (slots 0, 1).
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Handled(2));
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Handled(2));
    assert!(publish(&mut producer, &ring));
    assert_eq!(seen, vec![10, 11, 12, 13]);
}

#[test]
fn an_event_without_its_stamp_is_never_seen() {
    // A producer that died after writing the event's words but before its
    // stamp: the consumer sees nothing (and no half of anything).
    let ring = ring(4, 1);
    let view = ring.view();
    let mut producer = ProducerCore::new();
    let mut consumer = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    assert!(publish(&mut producer, &ring));
    write_event(&view.slot(1)[1..], &Tick::of(1));
    let mut seen = Vec::new();
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Handled(1));
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Idle);
    assert_eq!(seen, vec![0]);
}

#[test]
fn a_silent_consumer_is_evicted_only_when_it_holds_the_producer_back() {
    let ring = ring(4, 2);
    let view = ring.view();
    let mut producer = ProducerCore::new();
    let mut silent = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    let mut live = ConsumerCore::join(&view, JoinAt::Cursor, 2, 0, TIMEOUT).unwrap();
    for _ in 0..4 {
        assert!(publish(&mut producer, &ring));
    }
    let mut seen = Vec::new();
    poll(&mut live, &ring, &mut seen);
    // Heartbeats at 0; at `TIMEOUT` nobody is late yet.
    assert_eq!(producer.evict_stale(&view, 1, TIMEOUT, TIMEOUT), 0);
    // The live consumer beats; the silent one does not.
    view.entries[live.index]
        .heartbeat
        .store(5_000, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(producer.evict_stale(&view, 1, 5_000, TIMEOUT), 1);
    assert_eq!(producer.evictions, 1);
    assert!(publish(&mut producer, &ring), "room once evicted");
    // The evicted consumer finds out at its next poll, and hands over
    // nothing it cannot vouch for.
    let mut late = Vec::new();
    assert_eq!(poll(&mut silent, &ring, &mut late), Polled::Evicted);
    assert!(late.is_empty());
    // The live one is not evicted while it keeps up.
    assert_eq!(producer.evict_stale(&view, 1, 5_000, TIMEOUT), 0);
    assert_eq!(poll(&mut live, &ring, &mut seen), Polled::Handled(1));
}

#[test]
fn joins_at_the_cursor_or_at_a_sequence_still_held() {
    let ring = ring(4, 4);
    let view = ring.view();
    let mut producer = ProducerCore::new();
    for _ in 0..6 {
        assert!(publish(&mut producer, &ring)); // slots hold 2..=5
    }
    let at_cursor = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    assert_eq!(at_cursor.next, 6);

    assert_eq!(super::protocol::active_consumers(&view), 1);
    let mut at_three = ConsumerCore::join(&view, JoinAt::Sequence(3), 2, 0, TIMEOUT).unwrap();
    // Not acknowledged until the producer's next claim folds it in, and
    // not counted as joined before.
    assert_eq!(at_three.finish_join(&view), Err(JoinFailure::Pending));
    assert_eq!(super::protocol::active_consumers(&view), 1);
    assert!(publish(&mut producer, &ring), "6 reuses the slot of 2");
    at_three.finish_join(&view).expect("still in the ring");
    assert_eq!(super::protocol::active_consumers(&view), 2);
    assert!(
        !publish(&mut producer, &ring),
        "3 is held: the gate stops 7"
    );
    let mut seen = Vec::new();
    while poll(&mut at_three, &ring, &mut seen) != Polled::Idle {}
    assert_eq!(seen, vec![3, 4, 5, 6]);

    let mut at_one = ConsumerCore::join(&view, JoinAt::Sequence(1), 3, 0, TIMEOUT).unwrap();
    producer.refresh(&view);
    assert_eq!(
        at_one.finish_join(&view),
        Err(JoinFailure::NotInRing {
            requested: 1,
            oldest: 3
        })
    );
}

#[test]
fn a_full_table_refuses_and_a_left_entry_is_reused() {
    let ring = ring(4, 1);
    let view = ring.view();
    let mut first = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    assert_eq!(
        ConsumerCore::join(&view, JoinAt::Cursor, 2, 0, TIMEOUT).unwrap_err(),
        JoinFailure::TableFull
    );
    first.leave(&view);
    let second = ConsumerCore::join(&view, JoinAt::Cursor, 2, 0, TIMEOUT).unwrap();
    assert_eq!(second.index, 0);
    // The first consumer's generation is gone: it counts as evicted.
    assert!(first.is_evicted(&view));
    assert!(!second.is_evicted(&view));
}

#[test]
fn an_evicted_entry_is_reused_only_after_its_owner_is_silent() {
    let ring = ring(4, 1);
    let view = ring.view();
    let mut producer = ProducerCore::new();
    let consumer = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    for _ in 0..4 {
        assert!(publish(&mut producer, &ring));
    }
    assert_eq!(producer.evict_stale(&view, 1, 2 * TIMEOUT, TIMEOUT), 1);
    // Its owner might still be alive: not reusable until silent.
    view.entries[consumer.index]
        .heartbeat
        .store(3 * TIMEOUT, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        ConsumerCore::join(&view, JoinAt::Cursor, 2, 3 * TIMEOUT, TIMEOUT).unwrap_err(),
        JoinFailure::TableFull
    );
    let again = ConsumerCore::join(&view, JoinAt::Cursor, 2, 5 * TIMEOUT, TIMEOUT).unwrap();
    assert_eq!(again.next, 4);
    assert!(consumer.is_evicted(&view));
}

#[test]
fn close_lets_consumers_drain_then_stop() {
    let ring = ring(8, 1);
    let view = ring.view();
    let mut producer = ProducerCore::new();
    let mut consumer = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    for _ in 0..3 {
        assert!(publish(&mut producer, &ring));
    }
    producer.close(&view);
    assert!(!consumer.is_drained(&view));
    let mut seen = Vec::new();
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Handled(3));
    assert!(consumer.is_drained(&view));
}

#[test]
fn an_overwritten_slot_is_an_overrun_not_an_event() {
    // A consumer whose producer did not honour its gate (a bug, or a
    // hostile peer): it reports the overrun instead of handing over a
    // later event as this one.
    let ring = ring(2, 1);
    let view = ring.view();
    let mut consumer = ConsumerCore::join(&view, JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    let slot = view.slot(2);
    write_event(&slot[1..], &Tick::of(2));
    slot[0].store(2, std::sync::atomic::Ordering::Release);
    let mut seen = Vec::new();
    assert_eq!(poll(&mut consumer, &ring, &mut seen), Polled::Overrun);
    assert!(seen.is_empty());
}

#[test]
fn events_of_any_size_round_trip_through_words() {
    #[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Odd([u8; 13]);
    let geometry = Geometry::new(2, 1, 13, 1).unwrap();
    assert_eq!(
        geometry.slot_words, 4,
        "stamp + 13 bytes: 3 words, two slots a line"
    );
    let ring = HeapRing::new(geometry, "odd", 1, 0);
    let view = ring.view();
    let event = Odd(*b"thirteen byte");
    write_event(&view.slot(0)[1..], &event);
    assert_eq!(read_event::<Odd>(&view.slot(0)[1..]), event);
    let big = Geometry::new(2, 1, 64, 8).unwrap();
    assert_eq!(big.slot_words, 16, "a 64-byte event takes two lines");
}

#[test]
fn slots_pack_within_lines_and_never_straddle_one() {
    // (event bytes, slot words): zero, one, each class's largest and the next's first.
    for (size, words) in [
        (0, 1),
        (1, 2),
        (8, 2),
        (9, 4),
        (24, 4),
        (25, 8),
        (56, 8),
        (57, 16),
        (64, 16),
        (super::MAX_EVENT_SIZE, super::MAX_EVENT_SIZE / 8 + 8),
    ] {
        assert_eq!(
            super::layout::slot_words_for(size),
            words,
            "{size}-byte event"
        );
    }
    for size in 0..=200 {
        let words = super::layout::slot_words_for(size);
        assert!(
            words > size.div_ceil(8),
            "{size}: the stamp and the event fit"
        );
        assert!(
            words % 8 == 0 || (words.is_power_of_two() && words <= 8),
            "{size}: a slot of {words} words would straddle a line"
        );
    }
}

#[test]
fn geometry_refuses_what_does_not_fit() {
    assert!(Geometry::new(0, 1, 8, 8).is_none());
    assert!(Geometry::new(3, 1, 8, 8).is_none());
    assert!(Geometry::new(super::MAX_SHM_CAPACITY * 2, 1, 8, 8).is_none());
    assert!(Geometry::new(1, 0, 8, 8).is_none());
    assert!(Geometry::new(1, super::MAX_CONSUMERS + 1, 8, 8).is_none());
    assert!(Geometry::new(1, 1, super::MAX_EVENT_SIZE + 1, 8).is_none());
    assert!(Geometry::new(1, 1, 8, 128).is_none());
    let largest = Geometry::new(super::MAX_SHM_CAPACITY, super::MAX_CONSUMERS, 8, 8).unwrap();
    assert_eq!(largest.slot_words, 2);
    let smallest = Geometry::new(1, 1, 0, 1).unwrap();
    assert_eq!(smallest.slot_words, 1);
}

#[test]
fn a_consumer_and_a_producer_on_two_threads() {
    // The same protocol with real concurrency (Miri checks it for races).
    let ring = std::sync::Arc::new(ring(4, 1));
    let count = if cfg!(miri) { 40 } else { 100_000 };
    let consumer = ConsumerCore::join(&ring.view(), JoinAt::Cursor, 1, 0, TIMEOUT).unwrap();
    let reader = {
        let ring = std::sync::Arc::clone(&ring);
        std::thread::spawn(move || {
            let mut consumer = consumer;
            let mut seen = Vec::new();
            while (seen.len() as i64) < count {
                if poll(&mut consumer, &ring, &mut seen) == Polled::Idle {
                    std::thread::yield_now();
                }
            }
            seen
        })
    };
    let mut producer = ProducerCore::new();
    while producer.next < count {
        if !publish(&mut producer, &ring) {
            std::thread::yield_now();
        }
    }
    let seen = reader.join().unwrap();
    assert_eq!(seen, (0..count).collect::<Vec<_>>());
}
