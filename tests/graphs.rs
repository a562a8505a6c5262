//! Contract 1 and 2 over the three LMAX graph shapes: every handler sees every
//! event exactly once, in order, intact, and only after the stages it depends
//! on; over a million events per ring size, so small rings wrap many times.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::ticks::{assert_saw_all, collect_seen, publish_ticks, Recorder, Tick};
use common::with_timeout;
use tickring::{build_single_producer, Blocking, ShutdownReport, Sleeping, Yielding};

/// Events per run; the release numbers are the contract's minimum.
const EVENTS: i64 = if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

const LIMIT: Duration = Duration::from_secs(120);

fn assert_report(report: &ShutdownReport, names: &[&str]) {
    let reported: Vec<&str> = report.handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        reported, names,
        "the report lists handlers in the order added"
    );
    for handler in &report.handlers {
        assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
        assert_eq!(handler.events_skipped, 0, "{handler:?}");
        assert_eq!(handler.panic, None);
    }
}

/// One stage of three parallel handlers; each sees every event.
fn multicast(ring_size: usize) {
    with_timeout(LIMIT, &format!("multicast-{ring_size}"), move || {
        let (report_to, reports) = mpsc::channel();
        let mut producer = build_single_producer(ring_size, Tick::default, Yielding::new())
            .handle_events_with_handler(Recorder::new("a", vec![], report_to.clone()))
            .handle_events_with_handler(Recorder::new("b", vec![], report_to.clone()))
            .handle_events_with_handler(Recorder::new("c", vec![], report_to))
            .build()
            .expect("build");
        publish_ticks(&mut producer, EVENTS);
        let report = producer.shutdown();
        assert_report(&report, &["tickring-0-0", "tickring-0-1", "tickring-0-2"]);
        let seen = collect_seen(&reports, 3);
        for (seen, thread) in seen
            .iter()
            .zip(["tickring-0-0", "tickring-0-1", "tickring-0-2"])
        {
            assert_saw_all(seen, EVENTS);
            assert_eq!(seen.thread.as_deref(), Some(thread));
        }
    });
}

/// Three chained stages; each sees an event only after the one before it.
fn pipeline(ring_size: usize) {
    with_timeout(LIMIT, &format!("pipeline-{ring_size}"), move || {
        let (report_to, reports) = mpsc::channel();
        let first = Recorder::new("1-first", vec![], report_to.clone());
        let second = Recorder::new("2-second", vec![first.progress()], report_to.clone());
        // The third checks both stages before it, not only its direct one.
        let third = Recorder::new(
            "3-third",
            vec![first.progress(), second.progress()],
            report_to,
        );
        let mut producer = build_single_producer(ring_size, Tick::default, Blocking::new())
            .handle_events_with_handler(first)
            .and_then()
            .handle_events_with_handler(second)
            .and_then()
            .handle_events_with_handler(third)
            .build()
            .expect("build");
        publish_ticks(&mut producer, EVENTS);
        let report = producer.shutdown();
        assert_report(&report, &["tickring-0-0", "tickring-1-0", "tickring-2-0"]);
        for seen in collect_seen(&reports, 3) {
            assert_saw_all(&seen, EVENTS);
        }
    });
}

/// Two parallel handlers, then one that sees an event only after both.
fn diamond(ring_size: usize) {
    with_timeout(LIMIT, &format!("diamond-{ring_size}"), move || {
        let (report_to, reports) = mpsc::channel();
        let left = Recorder::new("left", vec![], report_to.clone());
        let right = Recorder::new("right", vec![], report_to.clone());
        let join = Recorder::new("z-join", vec![left.progress(), right.progress()], report_to);
        let mut producer = build_single_producer(ring_size, Tick::default, Sleeping::new())
            .thread_name("left")
            .handle_events_with_handler(left)
            .thread_name("right")
            .handle_events_with_handler(right)
            .and_then()
            .thread_name("join")
            .handle_events_with_handler(join)
            .build()
            .expect("build");
        publish_ticks(&mut producer, EVENTS);
        let report = producer.shutdown();
        assert_report(&report, &["left", "right", "join"]);
        let seen = collect_seen(&reports, 3);
        for (seen, thread) in seen.iter().zip(["left", "right", "join"]) {
            assert_saw_all(seen, EVENTS);
            assert_eq!(seen.thread.as_deref(), Some(thread));
        }
    });
}

#[test]
fn multicast_ring_of_4() {
    multicast(4);
}

#[test]
fn multicast_ring_of_64() {
    multicast(64);
}

#[test]
fn multicast_ring_of_65536() {
    multicast(65_536);
}

#[test]
fn pipeline_ring_of_4() {
    pipeline(4);
}

#[test]
fn pipeline_ring_of_64() {
    pipeline(64);
}

#[test]
fn pipeline_ring_of_65536() {
    pipeline(65_536);
}

#[test]
fn diamond_ring_of_4() {
    diamond(4);
}

#[test]
fn diamond_ring_of_64() {
    diamond(64);
}

#[test]
fn diamond_ring_of_65536() {
    diamond(65_536);
}
