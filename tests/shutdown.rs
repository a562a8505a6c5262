//! Contract 6: shutdown (and drop) drains every published event through every
//! handler; `on_start` and `on_shutdown` run once per handler, on its thread;
//! an idle pipeline shuts down; `wait_timeout` calls `on_timeout` while idle.

mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::ticks::{assert_saw_all, collect_seen, publish_ticks, Recorder, Tick};
use common::{wait_until, with_timeout};
use tickring::{
    build_single_producer, Blocking, BusySpin, EventHandler, EventProducer, MutEventHandler,
    Sleeping, WaitStrategy, Yielding,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Wraps a handler and holds it at its first event until `release` is set,
/// so that shutdown is called with every event still to be handled.
struct HeldAtFirstEvent<H> {
    inner: H,
    release: Arc<AtomicBool>,
}

impl<H: EventHandler<Tick>> EventHandler<Tick> for HeldAtFirstEvent<H> {
    fn on_event(&mut self, tick: &Tick, sequence: i64, end_of_batch: bool) {
        if sequence == 0 {
            wait_until(LIMIT, "the test releases the held handler", || {
                self.release.load(Ordering::Acquire)
            });
        }
        self.inner.on_event(tick, sequence, end_of_batch);
    }

    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.inner.on_batch_start(batch_size, queue_depth);
    }

    fn on_shutdown(&mut self) {
        self.inner.on_shutdown();
    }
}

/// Publishes `events` (all fit in the ring) while the first handler is held
/// at event 0, then shuts down (or drops the producer) and releases the
/// handler only once the shutdown has begun: the shutdown must wait for the
/// whole backlog, through every stage.
fn drains_the_backlog<W: WaitStrategy>(wait: W, strategy: &str, whole_graph: bool, via_drop: bool) {
    const EVENTS: i64 = 4_000;
    let name = format!(
        "drain-{strategy}-{}",
        if via_drop { "drop" } else { "shutdown" }
    );
    with_timeout(LIMIT, &name, move || {
        let (report_to, reports) = mpsc::channel();
        let release = Arc::new(AtomicBool::new(false));
        let held = HeldAtFirstEvent {
            inner: Recorder::new("held", vec![], report_to.clone()),
            release: Arc::clone(&release),
        };
        let mut builder = build_single_producer(4096, Tick::default, wait)
            .thread_name("held")
            .handle_events_with_handler(held);
        let mut recorders = 1;
        if whole_graph {
            builder = builder
                .handle_events_with_handler(Recorder::new("sibling", vec![], report_to.clone()))
                .and_then()
                .handle_events_with_handler(Recorder::new("behind", vec![], report_to.clone()));
            recorders = 3;
        }
        drop(report_to);
        let mut producer = builder.build().expect("build");
        publish_ticks(&mut producer, EVENTS);
        let held_lag = producer.handler_lags().next().expect("one lag per handler");
        assert_eq!(
            held_lag,
            ("held", EVENTS as u64),
            "the held handler finished nothing"
        );

        let shutting_down = Arc::new(AtomicBool::new(false));
        let releaser = {
            let shutting_down = Arc::clone(&shutting_down);
            thread::spawn(move || {
                wait_until(LIMIT, "the test starts the shutdown", || {
                    shutting_down.load(Ordering::Acquire)
                });
                thread::sleep(Duration::from_millis(20));
                release.store(true, Ordering::Release);
            })
        };
        shutting_down.store(true, Ordering::Release);
        if via_drop {
            drop(producer);
        } else {
            let report = producer.shutdown();
            assert_eq!(report.handlers.len(), recorders);
            for handler in &report.handlers {
                assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
                assert_eq!(handler.panic, None);
            }
        }
        releaser.join().expect("releaser");
        for seen in collect_seen(&reports, recorders) {
            assert_saw_all(&seen, EVENTS);
        }
    });
}

#[test]
fn shutdown_drains_yielding() {
    drains_the_backlog(Yielding::new(), "yielding", true, false);
}

#[test]
fn shutdown_drains_sleeping() {
    drains_the_backlog(Sleeping::new(), "sleeping", true, false);
}

#[test]
fn shutdown_drains_blocking() {
    drains_the_backlog(Blocking::new(), "blocking", true, false);
}

#[test]
fn shutdown_drains_busy_spin() {
    // One handler: with the producer, two threads on two cores.
    drains_the_backlog(BusySpin, "busy-spin", false, false);
}

#[test]
fn drop_drains_yielding() {
    drains_the_backlog(Yielding::new(), "yielding", true, true);
}

#[test]
fn drop_drains_blocking() {
    drains_the_backlog(Blocking::new(), "blocking", true, true);
}

/// A ring much smaller than the run: shutdown right after the last publish,
/// with the stages still working through their backlog.
#[test]
fn shutdown_right_after_a_long_run_drains_every_stage() {
    const EVENTS: i64 = 200_000;
    with_timeout(LIMIT, "drain-long-run", || {
        let (report_to, reports) = mpsc::channel();
        let first = Recorder::new("first", vec![], report_to.clone());
        let second = Recorder::new("second", vec![first.progress()], report_to.clone());
        let mut producer = build_single_producer(64, Tick::default, Yielding::new())
            .handle_events_with_handler(first)
            .and_then()
            .handle_events_with_handler(second)
            .build()
            .expect("build");
        drop(report_to);
        publish_ticks(&mut producer, EVENTS);
        let report = producer.shutdown();
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, EVENTS as u64, "{handler:?}");
        }
        for seen in collect_seen(&reports, 2) {
            assert_saw_all(&seen, EVENTS);
        }
    });
}

/// One hook call, and the thread it ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hook {
    Created,
    Start,
    Event(i64),
    Shutdown,
}

type HookLog = Arc<Mutex<Vec<(&'static str, Hook, Option<String>)>>>;

fn log(hooks: &HookLog, handler: &'static str, hook: Hook) {
    let thread = thread::current().name().map(str::to_owned);
    hooks.lock().unwrap().push((handler, hook, thread));
}

/// Logs every hook it runs.
struct Lifecycle {
    label: &'static str,
    hooks: HookLog,
}

impl Lifecycle {
    fn new(label: &'static str, hooks: &HookLog) -> Self {
        Self {
            label,
            hooks: Arc::clone(hooks),
        }
    }
}

/// A [`Lifecycle`] holding an `Rc`: not `Send`, so it can only be made on its
/// own thread (by `handle_events_with_factory`).
struct LocalLifecycle {
    inner: Lifecycle,
    _not_send: Rc<()>,
}

impl EventHandler<u64> for LocalLifecycle {
    fn on_event(&mut self, event: &u64, sequence: i64, end_of_batch: bool) {
        EventHandler::on_event(&mut self.inner, event, sequence, end_of_batch);
    }
    fn on_start(&mut self) {
        EventHandler::on_start(&mut self.inner);
    }
    fn on_shutdown(&mut self) {
        EventHandler::on_shutdown(&mut self.inner);
    }
}

impl EventHandler<u64> for Lifecycle {
    fn on_event(&mut self, _: &u64, sequence: i64, _: bool) {
        log(&self.hooks, self.label, Hook::Event(sequence));
    }
    fn on_start(&mut self) {
        log(&self.hooks, self.label, Hook::Start);
    }
    fn on_shutdown(&mut self) {
        log(&self.hooks, self.label, Hook::Shutdown);
    }
}

impl MutEventHandler<u64> for Lifecycle {
    fn on_event(&mut self, event: &mut u64, sequence: i64, _: bool) {
        *event += 1;
        log(&self.hooks, self.label, Hook::Event(sequence));
    }
    fn on_start(&mut self) {
        log(&self.hooks, self.label, Hook::Start);
    }
    fn on_shutdown(&mut self) {
        log(&self.hooks, self.label, Hook::Shutdown);
    }
}

/// The hooks `label` ran, asserting each ran on `thread`.
fn hooks_of(hooks: &HookLog, label: &str, thread: &str) -> Vec<Hook> {
    hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|(handler, _, _)| *handler == label)
        .map(|(_, hook, ran_on)| {
            assert_eq!(
                ran_on.as_deref(),
                Some(thread),
                "{label}: {hook:?} ran off its thread"
            );
            hook.clone()
        })
        .collect()
}

fn lifecycle_runs_once_on_the_handlers_thread(events: i64) {
    with_timeout(LIMIT, &format!("lifecycle-{events}"), move || {
        let hooks: HookLog = Arc::default();
        let factory_hooks = Arc::clone(&hooks);
        let mut producer = build_single_producer(16, || 0u64, Blocking::new())
            .thread_name("decode")
            .handle_events_mut_handler(Lifecycle::new("decode", &hooks))
            .and_then()
            .handle_events_with_handler(Lifecycle::new("book", &hooks))
            .thread_name("risk-check")
            .handle_events_with_handler(Lifecycle::new("risk", &hooks))
            .and_then()
            .handle_events_with_factory(move || {
                log(&factory_hooks, "local", Hook::Created);
                LocalLifecycle {
                    inner: Lifecycle::new("local", &factory_hooks),
                    _not_send: Rc::new(()),
                }
            })
            .build()
            .expect("build");
        let handlers = [
            ("decode", "decode"),
            ("book", "tickring-1-0"),
            ("risk", "risk-check"),
            ("local", "tickring-2-0"),
        ];
        // `build()` returns once every handler is created and started.
        for (label, thread) in handlers {
            let expected_before_events = if label == "local" {
                vec![Hook::Created, Hook::Start]
            } else {
                vec![Hook::Start]
            };
            assert_eq!(
                hooks_of(&hooks, label, thread),
                expected_before_events,
                "{label}"
            );
        }
        for sequence in 0..events {
            producer
                .publish(|event| *event = sequence as u64)
                .expect("publish");
        }
        let report = producer.shutdown();
        let names: Vec<&str> = report.handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["decode", "tickring-1-0", "risk-check", "tickring-2-0"]
        );
        for (label, thread) in handlers {
            assert_eq!(
                report
                    .handler(thread)
                    .expect("reported by name")
                    .events_handled,
                events as u64
            );
            let mut expected = if label == "local" {
                vec![Hook::Created, Hook::Start]
            } else {
                vec![Hook::Start]
            };
            expected.extend((0..events).map(Hook::Event));
            expected.push(Hook::Shutdown);
            assert_eq!(hooks_of(&hooks, label, thread), expected, "{label}");
        }
    });
}

#[test]
fn on_start_and_on_shutdown_run_once_on_the_handlers_thread() {
    lifecycle_runs_once_on_the_handlers_thread(100);
}

#[test]
fn shutdown_with_no_event_published_runs_each_hook_once() {
    lifecycle_runs_once_on_the_handlers_thread(0);
}

/// An idle pipeline of each strategy shuts down (a parked Blocking or
/// sleeping waiter must be woken) and reports nothing handled: two idle
/// recorders in the first stage, one handler behind them.
fn idle_shutdown<W: WaitStrategy>(wait: W, strategy: &str, via_drop: bool) {
    let handlers = 2;
    with_timeout(LIMIT, &format!("idle-{strategy}"), move || {
        let (report_to, reports) = mpsc::channel();
        let producer = build_single_producer(8, Tick::default, wait)
            .handle_events_with_handler(Recorder::new("idle", vec![], report_to.clone()))
            .handle_events_with_handler(Recorder::new("idle", vec![], report_to))
            .and_then()
            .handle_events_with(|_: &Tick, _, _| {})
            .build()
            .expect("build");
        // Let every handler reach its wait (and Blocking ones park).
        thread::sleep(Duration::from_millis(50));
        if via_drop {
            drop(producer);
        } else {
            let report = producer.shutdown();
            assert_eq!(report.handlers.len(), handlers + 1);
            for handler in &report.handlers {
                assert_eq!(handler.events_handled, 0, "{handler:?}");
                assert_eq!(handler.panic, None);
            }
        }
        for seen in collect_seen(&reports, handlers) {
            assert_saw_all(&seen, 0);
        }
    });
}

#[test]
fn idle_shutdown_every_strategy() {
    idle_shutdown(Yielding::new(), "yielding", false);
    idle_shutdown(Sleeping::new(), "sleeping", false);
    idle_shutdown(Blocking::new(), "blocking", false);
    idle_shutdown(Blocking::new(), "blocking-drop", true);
}

/// Counts `on_timeout` calls and checks the sequence each one reports.
struct TimeoutWatcher {
    timeouts: Arc<AtomicU64>,
    last_timeout_sequence: Arc<AtomicI64>,
    handled: Arc<AtomicI64>,
}

impl EventHandler<u64> for TimeoutWatcher {
    fn on_event(&mut self, _: &u64, sequence: i64, _: bool) {
        self.handled.store(sequence, Ordering::Release);
    }
    fn on_timeout(&mut self, sequence: i64) {
        self.last_timeout_sequence
            .store(sequence, Ordering::Release);
        self.timeouts.fetch_add(1, Ordering::AcqRel);
    }
}

fn on_timeout_fires_while_idle<W: WaitStrategy>(wait: W, strategy: &str, with_sibling: bool) {
    with_timeout(LIMIT, &format!("timeout-{strategy}"), move || {
        let timeouts = Arc::new(AtomicU64::new(0));
        let last_timeout_sequence = Arc::new(AtomicI64::new(i64::MIN));
        let handled = Arc::new(AtomicI64::new(-1));
        let sibling_timeouts = Arc::new(AtomicU64::new(0));
        let mut builder = build_single_producer(8, || 0u64, wait)
            .wait_timeout(Duration::from_millis(5))
            .handle_events_with_handler(TimeoutWatcher {
                timeouts: Arc::clone(&timeouts),
                last_timeout_sequence: Arc::clone(&last_timeout_sequence),
                handled: Arc::clone(&handled),
            });
        if with_sibling {
            // No wait_timeout: it must never see on_timeout.
            builder = builder.handle_events_with_handler(TimeoutWatcher {
                timeouts: Arc::clone(&sibling_timeouts),
                last_timeout_sequence: Arc::new(AtomicI64::new(0)),
                handled: Arc::new(AtomicI64::new(-1)),
            });
        }
        let mut producer = builder.build().expect("build");

        wait_until(
            Duration::from_secs(20),
            "on_timeout fires three times",
            || timeouts.load(Ordering::Acquire) >= 3,
        );
        assert_eq!(
            last_timeout_sequence.load(Ordering::Acquire),
            -1,
            "before any event, on_timeout reports sequence -1"
        );

        for value in 0..10 {
            producer.publish(|event| *event = value).expect("publish");
        }
        wait_until(
            Duration::from_secs(20),
            "the handler handles all 10",
            || handled.load(Ordering::Acquire) == 9,
        );
        let before = timeouts.load(Ordering::Acquire);
        wait_until(
            Duration::from_secs(20),
            "on_timeout fires again after the events",
            || timeouts.load(Ordering::Acquire) >= before + 2,
        );
        assert_eq!(
            last_timeout_sequence.load(Ordering::Acquire),
            9,
            "on_timeout reports the last sequence handled"
        );

        let report = producer.shutdown();
        for handler in &report.handlers {
            assert_eq!(handler.events_handled, 10, "{handler:?}");
        }
        assert_eq!(sibling_timeouts.load(Ordering::Acquire), 0);
    });
}

#[test]
fn wait_timeout_yielding() {
    on_timeout_fires_while_idle(Yielding::new(), "yielding", true);
}

#[test]
fn wait_timeout_sleeping() {
    on_timeout_fires_while_idle(Sleeping::new(), "sleeping", true);
}

#[test]
fn wait_timeout_blocking() {
    on_timeout_fires_while_idle(Blocking::new(), "blocking", true);
}

#[test]
fn wait_timeout_busy_spin() {
    on_timeout_fires_while_idle(BusySpin, "busy-spin", false);
}

/// A downstream stage times out too: its wait is on the stage before it.
#[test]
fn wait_timeout_in_a_downstream_stage() {
    with_timeout(LIMIT, "timeout-downstream", || {
        let timeouts = Arc::new(AtomicU64::new(0));
        let last_timeout_sequence = Arc::new(AtomicI64::new(i64::MIN));
        let handled = Arc::new(AtomicI64::new(-1));
        let mut producer = build_single_producer(8, || 0u64, Blocking::new())
            .handle_events_with(|_: &u64, _, _| {})
            .and_then()
            .wait_timeout(Duration::from_millis(5))
            .handle_events_with_handler(TimeoutWatcher {
                timeouts: Arc::clone(&timeouts),
                last_timeout_sequence: Arc::clone(&last_timeout_sequence),
                handled: Arc::clone(&handled),
            })
            .build()
            .expect("build");
        producer.publish(|event| *event = 1).expect("publish");
        wait_until(
            Duration::from_secs(20),
            "the downstream handler handles event 0",
            || handled.load(Ordering::Acquire) == 0,
        );
        let before = timeouts.load(Ordering::Acquire);
        wait_until(
            Duration::from_secs(20),
            "on_timeout fires downstream",
            || timeouts.load(Ordering::Acquire) >= before + 2,
        );
        assert_eq!(last_timeout_sequence.load(Ordering::Acquire), 0);
        let report = producer.shutdown();
        assert_eq!(report.handlers[1].events_handled, 1);
    });
}

// The report prints one line per handler, with its panic if it had one.
#[test]
fn the_report_prints_one_line_per_handler() {
    common::silence_expected_panics();
    let mut producer = build_single_producer(8, || 0u8, Yielding::new())
        .thread_name("book")
        .handle_events_with(|_: &u8, _, _| {})
        .thread_name("risk")
        .handle_events_with(|_: &u8, sequence, _| {
            if sequence == 1 {
                panic!("{}: limit breached", common::EXPECTED_PANIC);
            }
        })
        .build()
        .unwrap();
    for _ in 0..2 {
        let _ = producer.publish(|event| *event = 1);
    }
    let report = producer.shutdown();
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("book: "), "{text}");
    assert!(
        lines[1].starts_with("risk: 1 handled, 0 skipped; "),
        "{text}"
    );
    assert!(lines[1].contains("limit breached"), "{text}");
}
