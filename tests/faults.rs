//! Contract 7, faults never hang: a panicking handler, worker or `fill`,
//! producers blocked on a full ring when a handler halts or another handle
//! goes, and handles let go from many threads at once. Every test runs under
//! `with_timeout` and every wait is bounded, so a hang fails the test.
//!
//! - A handler panicking at the first event, in the middle, or in
//!   `on_shutdown`, in the first, middle or last stage, under
//!   `PanicPolicy::Halt` and `LogAndSkip`, under every wait strategy but
//!   BusySpin (which gets a case of its own with one handler): the report
//!   names the handler, the sequence and the message; under `Halt` the
//!   producer gets `Halted`, and keeps getting it at once from every
//!   publishing call, room or not; under `LogAndSkip` exactly the panicking
//!   events are skipped.
//! - A panic in `on_timeout` halts like one in `on_event`.
//! - A panicking worker of a pool.
//! - A producer's `fill` panicking in the middle of a batch: what it filled
//!   stays published, the rest of the claim is released, no gap follows.
//! - Producers blocked on a full ring: dropping another handle neither shuts
//!   the pipeline down nor hangs, and once the handler moves the blocked
//!   producer completes and the last handle's drop drains; a halt releases
//!   blocked producers with `Halted`.
//! - Producer handles dropped (or shut down) from ten threads at once: one
//!   drain, every event handled.
//!
//! Elsewhere: bad configuration (a panic in `on_start` or a factory
//! included) in `build_errors.rs`; back-pressure and `Full`/`TimedOut` on a
//! full ring without a fault in `capacity.rs` and `multi_producer.rs`; faults
//! outside a handler's own call (a payload that panics when dropped, extreme
//! inputs, a halt stopping a sibling mid-batch) in `hardening.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{
    join, silence_expected_panics, wait_until, with_timeout, Failures, Gate, EXPECTED_PANIC,
    TEST_LIMIT,
};
use tickring::builder_state::NeedsParticipant;
use tickring::{
    build_multi_producer, build_single_producer, producer_kind, Blocking, Builder, BusySpin,
    EventHandler, EventProducer, FullRingWait, HandlerPanic, HandlerReport, MultiProducer,
    PanicPolicy, PollState, Producer, PublishError, PublishTimeoutError, ShutdownReport, Sleeping,
    TryPublishError, WaitStrategy, Yielding,
};

/// Long enough for a thread that could make progress to make it; used only
/// to give a wrong outcome the chance to show, never to assert speed.
const SETTLE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// The event and the recording handler

/// Every field is derived from (`producer`, `counter`), so a torn, stale or
/// overwritten slot shows, and each of several producers' events can be
/// checked in that producer's order (the shared `common::ticks::Tick`
/// derives from the sequence, which a multi-producer `fill` does not know).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tick {
    producer: u32,
    counter: u64,
    price: u64,
    checksum: u64,
}

impl Tick {
    fn of(producer: u32, counter: u64) -> Self {
        let price = counter.wrapping_mul(0x9E37_79B9).rotate_left(11) ^ u64::from(producer);
        Self {
            producer,
            counter,
            price,
            checksum: price.rotate_left(29) ^ counter ^ (u64::from(producer) << 56),
        }
    }

    fn fill(&mut self, producer: u32, counter: u64) {
        *self = Self::of(producer, counter);
    }
}

/// What a [`Recorder`] saw, sent from its `on_shutdown`.
#[derive(Debug, Clone, Default)]
struct Seen {
    label: &'static str,
    /// Events handled without panicking.
    events: u64,
    /// Per producer: the next counter due (= how many it saw).
    next_counter: Vec<u64>,
    starts: u32,
    thread_at_start: Option<String>,
    thread_at_shutdown: Option<String>,
    failures: Failures,
}

/// A handler that checks every event (the next sequence, each producer's
/// events in order, intact content) and can be told to hold or panic.
/// Sends what it saw from `on_shutdown`.
struct Recorder {
    seen: Seen,
    next_sequence: i64,
    /// Single producer: the counter is the sequence.
    single_producer: bool,
    hold_at: Option<(i64, Gate)>,
    panic_at: Option<i64>,
    panic_on_shutdown: bool,
    report_to: mpsc::Sender<Seen>,
}

impl Recorder {
    fn new(label: &'static str, producers: usize, report_to: &mpsc::Sender<Seen>) -> Self {
        Self {
            seen: Seen {
                label,
                next_counter: vec![0; producers],
                ..Seen::default()
            },
            next_sequence: 0,
            single_producer: producers == 1,
            hold_at: None,
            panic_at: None,
            panic_on_shutdown: false,
            report_to: report_to.clone(),
        }
    }

    fn hold_at(mut self, sequence: i64, gate: Gate) -> Self {
        self.hold_at = Some((sequence, gate));
        self
    }

    fn panic_at(mut self, sequence: i64) -> Self {
        self.panic_at = Some(sequence);
        self
    }

    fn panic_on_shutdown(mut self) -> Self {
        self.panic_on_shutdown = true;
        self
    }

    fn check(&mut self, tick: &Tick, sequence: i64) {
        let label = self.seen.label;
        let failures = &mut self.seen.failures;
        let expected = self.next_sequence;
        if sequence != expected {
            failures.record(|| format!("{label}: got sequence {sequence}, expected {expected}"));
        }
        self.next_sequence = sequence + 1;
        if *tick != Tick::of(tick.producer, tick.counter) {
            failures.record(|| format!("{label}: torn event at sequence {sequence}: {tick:?}"));
            return;
        }
        if self.single_producer && (tick.producer, tick.counter) != (0, sequence as u64) {
            failures.record(|| format!("{label}: stale event at sequence {sequence}: {tick:?}"));
        }
        let Some(due) = self.seen.next_counter.get_mut(tick.producer as usize) else {
            failures.record(|| format!("{label}: unknown producer at {sequence}: {tick:?}"));
            return;
        };
        if tick.counter != *due {
            let due = *due;
            failures.record(|| {
                format!(
                    "{label}: at sequence {sequence}: producer {}'s event {} arrived when {due} \
                     was due",
                    tick.producer, tick.counter
                )
            });
        }
        *due = tick.counter + 1;
    }
}

impl EventHandler<Tick> for Recorder {
    fn on_event(&mut self, tick: &Tick, sequence: i64, _end_of_batch: bool) {
        if let Some((at, gate)) = &self.hold_at {
            if *at == sequence {
                gate.wait();
            }
        }
        self.check(tick, sequence);
        if self.panic_at == Some(sequence) {
            panic!("{EXPECTED_PANIC}: {} fails at {sequence}", self.seen.label);
        }
        self.seen.events += 1;
    }

    fn on_start(&mut self) {
        self.seen.starts += 1;
        self.seen.thread_at_start = thread::current().name().map(str::to_owned);
    }

    fn on_shutdown(&mut self) {
        self.seen.thread_at_shutdown = thread::current().name().map(str::to_owned);
        let _ = self.report_to.send(self.seen.clone());
        if self.panic_on_shutdown {
            panic!("{EXPECTED_PANIC}: {} fails on shutdown", self.seen.label);
        }
    }
}

/// Checks what a recorder saw: no failed check, `on_start` once, and
/// `on_start` and `on_shutdown` on the handler's own thread.
fn assert_sound(seen: &Seen) {
    seen.failures.assert_none(seen.label);
    assert_eq!(seen.starts, 1, "{}: on_start runs once", seen.label);
    assert_eq!(
        seen.thread_at_start, seen.thread_at_shutdown,
        "{}: on_start and on_shutdown run on the handler's thread",
        seen.label
    );
}

/// Receives one [`Seen`] per recorder (each sent once, from `on_shutdown`),
/// sorted by label; checks each with [`assert_sound`].
fn collect_seen(reports: &mpsc::Receiver<Seen>, recorders: usize) -> Vec<Seen> {
    let mut seen: Vec<Seen> = (0..recorders)
        .map(|_| {
            reports
                .recv_timeout(common::scaled(Duration::from_secs(10)))
                .expect("every recorder runs on_shutdown")
        })
        .collect();
    assert!(
        reports.try_recv().is_err(),
        "a recorder ran on_shutdown more than once"
    );
    seen.sort_by_key(|seen| seen.label);
    seen.iter().for_each(assert_sound);
    seen
}

fn seen_by<'a>(seen: &'a [Seen], label: &str) -> &'a Seen {
    seen.iter()
        .find(|seen| seen.label == label)
        .unwrap_or_else(|| panic!("no report from '{label}'"))
}

/// A reported panic as (handler, sequence, message), to compare with what
/// a test expects (`HandlerPanic` is `#[non_exhaustive]`: no test can make
/// one to compare with).
fn parts(panic: Option<&HandlerPanic>) -> Option<(&str, Option<i64>, &str)> {
    panic.map(|panic| {
        (
            panic.handler.as_str(),
            panic.sequence,
            panic.message.as_str(),
        )
    })
}

fn handler<'a>(report: &'a ShutdownReport, name: &str) -> &'a HandlerReport {
    report
        .handler(name)
        .unwrap_or_else(|| panic!("'{name}' missing from {report:?}"))
}

/// Runs `case` under Yielding, Sleeping and Blocking, in turn. (BusySpin
/// needs a core per spinning thread; these pipelines have more threads than
/// the build machine has cores.)
fn under_every_wait_strategy(case: impl Fn(Strategy)) {
    for strategy in [Strategy::Yielding, Strategy::Sleeping, Strategy::Blocking] {
        case(strategy);
    }
}

/// A wait strategy chosen at run time, so each case is written once.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    Yielding,
    /// With producers that park (sleep) on a full ring, too.
    Sleeping,
    Blocking,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::Yielding => "yielding",
            Self::Sleeping => "sleeping",
            Self::Blocking => "blocking",
        }
    }

    fn wait(self) -> AnyWait {
        match self {
            Self::Yielding => AnyWait::Yielding(Yielding::new()),
            Self::Sleeping => AnyWait::Sleeping(Sleeping::new()),
            Self::Blocking => AnyWait::Blocking(Box::default()),
        }
    }

    fn full_ring(self) -> FullRingWait {
        match self {
            Self::Sleeping => FullRingWait::Park {
                max_sleep: Duration::from_micros(50),
            },
            _ => FullRingWait::Yield,
        }
    }

    fn single(
        self,
        size: usize,
    ) -> Builder<Tick, AnyWait, producer_kind::Single, NeedsParticipant> {
        build_single_producer(size, Tick::default, self.wait()).producer_wait(self.full_ring())
    }

    fn multi(self, size: usize) -> Builder<Tick, AnyWait, producer_kind::Multi, NeedsParticipant> {
        build_multi_producer(size, Tick::default, self.wait()).producer_wait(self.full_ring())
    }
}

/// The three strategies behind one type, so a case is compiled once.
#[derive(Debug)]
enum AnyWait {
    Yielding(Yielding),
    Sleeping(Sleeping),
    // Boxed: it is a few cache lines, the others a few words.
    Blocking(Box<Blocking>),
}

impl WaitStrategy for AnyWait {
    fn wait_until<T>(
        &self,
        timeout: Option<Duration>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        match self {
            Self::Yielding(wait) => wait.wait_until(timeout, ready),
            Self::Sleeping(wait) => wait.wait_until(timeout, ready),
            Self::Blocking(wait) => wait.wait_until(timeout, ready),
        }
    }

    fn signal_all_when_blocking(&self) {
        if let Self::Blocking(wait) = self {
            wait.signal_all_when_blocking();
        }
    }
}

/// Publishes events `0..` until `publish` fails; returns the error and how
/// many events were published. The caller's `with_timeout` bounds the loop:
/// a halt that never reaches the producer fails the test as a hang.
fn publish_until_error<W: WaitStrategy>(producer: &mut Producer<Tick, W>) -> (PublishError, i64) {
    let mut published = 0;
    loop {
        match producer.publish(|tick| tick.fill(0, published as u64)) {
            Ok(sequence) => {
                assert_eq!(sequence, published);
                published += 1;
            }
            Err(error) => return (error, published),
        }
    }
}

/// After a halt, `Halted` sticks: every publishing call refuses at once,
/// calls no closure, and publishes nothing.
fn assert_halt_sticks<W: WaitStrategy>(producer: &mut Producer<Tick, W>) {
    let last = producer.last_published();
    for _ in 0..3 {
        assert_eq!(
            producer.publish(|_| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            producer.batch_publish(2, |_, _| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            producer.publish_timeout(Duration::from_secs(3600), |_| unreachable!(
                "closure called after halt"
            )),
            Err(PublishTimeoutError::Halted),
            "publish_timeout does not wait out its timeout on a halted pipeline"
        );
        assert_eq!(
            producer.try_publish(|_| unreachable!("closure called after halt")),
            Err(TryPublishError::Halted)
        );
        assert_eq!(
            producer.try_batch_publish(2, |_, _| unreachable!("closure called after halt")),
            Err(TryPublishError::Halted)
        );
    }
    assert_eq!(
        producer.last_published(),
        last,
        "nothing published after halt"
    );
}

/// As [`assert_halt_sticks`], for a multi-producer handle.
fn assert_multi_halt_sticks<W: WaitStrategy>(handle: &mut MultiProducer<Tick, W>) {
    for _ in 0..3 {
        assert_eq!(
            handle.publish(|_| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            handle.batch_publish(2, |_, _| unreachable!("closure called after halt")),
            Err(PublishError::Halted)
        );
        assert_eq!(
            handle.try_publish(|_| unreachable!("closure called after halt")),
            Err(TryPublishError::Halted)
        );
        assert_eq!(
            handle.try_batch_publish(2, |_, _| unreachable!("closure called after halt")),
            Err(TryPublishError::Halted)
        );
        let mut filled = false;
        let outcome = handle.publish_timeout(Duration::from_secs(3600), |_| filled = true);
        assert_eq!(
            (outcome, filled),
            (Err(PublishTimeoutError::Halted), false),
            "MultiProducer::publish_timeout after a halt must fail at once without filling \
             (it publishes into the halted pipeline when the ring has room)"
        );
    }
}

// ---------------------------------------------------------------------------
// A panicking handler, at each moment, in each stage, under each policy

const EVENTS: i64 = 2_000;
const MIDDLE: i64 = 1_000;
const RING: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    FirstEvent,
    MiddleEvent,
    OnShutdown,
}

impl When {
    fn sequence(self) -> Option<i64> {
        match self {
            Self::FirstEvent => Some(0),
            Self::MiddleEvent => Some(MIDDLE),
            Self::OnShutdown => None,
        }
    }
}

fn panic_case(policy: PanicPolicy, when: When, faulty_stage: usize) {
    silence_expected_panics();
    let name = format!("{policy:?}-{when:?}-stage-{faulty_stage}");
    with_timeout(TEST_LIMIT, &name, move || {
        under_every_wait_strategy(|wait| {
            panic_case_with(wait, policy, when, faulty_stage);
        });
    });
}

/// The pipeline: stage 0 `a0` and `a1`, stage 1 `b`, stage 2 `c0` and `c1`.
/// The faulty handler, named `faulty`, takes the place of the first handler
/// of its stage.
fn panic_case_with(wait: Strategy, policy: PanicPolicy, when: When, faulty_stage: usize) {
    let context = format!(
        "{policy:?}, {when:?}, stage {faulty_stage}, {}",
        wait.name()
    );
    let (report_to, reports) = mpsc::channel();
    // (stage, name) of every handler, in the order they are added.
    let mut names = Vec::new();
    let mut recorder = |stage: usize, position: usize, label: &'static str| {
        let faulty = stage == faulty_stage && position == 0;
        let label = if faulty { "faulty" } else { label };
        let mut recorder = Recorder::new(label, 1, &report_to);
        if faulty {
            recorder = match when.sequence() {
                Some(sequence) => recorder.panic_at(sequence),
                None => recorder.panic_on_shutdown(),
            };
        }
        names.push((stage, label));
        (label, recorder)
    };
    let a0 = recorder(0, 0, "a0");
    let a1 = recorder(0, 1, "a1");
    let b = recorder(1, 0, "b");
    let c0 = recorder(2, 0, "c0");
    let c1 = recorder(2, 1, "c1");
    drop(report_to);
    let mut producer = wait
        .single(RING)
        .on_handler_panic(policy)
        .thread_name(a0.0)
        .handle_events_with_handler(a0.1)
        .thread_name(a1.0)
        .handle_events_with_handler(a1.1)
        .and_then()
        .thread_name(b.0)
        .handle_events_with_handler(b.1)
        .and_then()
        .thread_name(c0.0)
        .handle_events_with_handler(c0.1)
        .thread_name(c1.0)
        .handle_events_with_handler(c1.1)
        .build()
        .expect("valid pipeline");

    let halts = policy == PanicPolicy::Halt && when != When::OnShutdown;
    let published = if halts {
        let (error, published) = publish_until_error(&mut producer);
        assert_eq!(error, PublishError::Halted, "{context}");
        let panic_at = when.sequence().expect("an event");
        // The faulty handler saw its event; nothing after it was released,
        // so the producer could not get a ring further.
        assert!(
            (panic_at + 1..=panic_at + RING as i64).contains(&published),
            "{context}: published {published}"
        );
        assert_halt_sticks(&mut producer);
        published
    } else {
        for counter in 0..EVENTS {
            producer
                .publish(|tick| tick.fill(0, counter as u64))
                .unwrap_or_else(|error| panic!("{context}: {error}"));
        }
        EVENTS
    };
    let report = producer.shutdown();
    let seen = collect_seen(&reports, names.len());

    let reported: Vec<&str> = report.handlers.iter().map(|h| h.name.as_str()).collect();
    let added: Vec<&str> = names.iter().map(|(_, name)| *name).collect();
    assert_eq!(
        reported, added,
        "{context}: every handler is reported, in order"
    );
    let message = match when.sequence() {
        Some(sequence) => format!("{EXPECTED_PANIC}: faulty fails at {sequence}"),
        None => format!("{EXPECTED_PANIC}: faulty fails on shutdown"),
    };
    let expected_panic = Some(("faulty", when.sequence(), message.as_str()));
    assert_eq!(parts(report.first_panic()), expected_panic, "{context}");
    let shown = report.first_panic().expect("compared above").to_string();
    assert!(
        shown.contains("'faulty'") && shown.contains(&message),
        "{context}: {shown}"
    );
    if let Some(sequence) = when.sequence() {
        assert!(
            shown.contains(&format!("sequence {sequence}")),
            "{context}: {shown}"
        );
    }
    let faulty = handler(&report, "faulty");
    assert_eq!(parts(faulty.panic.as_ref()), expected_panic, "{context}");
    let (handled, skipped) = match (policy, when.sequence()) {
        (_, None) => (EVENTS, 0),
        (PanicPolicy::Halt, Some(sequence)) => (sequence, 0),
        (_, Some(_)) => (EVENTS - 1, 1),
    };
    assert_eq!(
        (faulty.events_handled, faulty.events_skipped),
        (handled as u64, skipped),
        "{context}: the faulty handler's counts"
    );
    assert_eq!(seen_by(&seen, "faulty").events, handled as u64, "{context}");

    for &(stage, name) in names.iter().filter(|(_, name)| *name != "faulty") {
        let report = handler(&report, name);
        assert_eq!(report.panic, None, "{context}: {name}");
        assert_eq!(report.events_skipped, 0, "{context}: {name}");
        // The recorder saw a gap-free prefix (it checks order and content);
        // the report counts the same events.
        assert_eq!(
            seen_by(&seen, name).events,
            report.events_handled,
            "{context}: {name}"
        );
        let handled = report.events_handled as i64;
        if !halts {
            assert_eq!(handled, EVENTS, "{context}: {name} handles every event");
            continue;
        }
        let panic_at = when.sequence().expect("an event");
        if stage < faulty_stage {
            assert!(
                (panic_at + 1..=published).contains(&handled),
                "{context}: {name}, upstream of the panic, handled {handled}"
            );
        } else if stage == faulty_stage {
            assert!(handled <= published, "{context}: {name} handled {handled}");
        } else {
            assert!(
                handled <= panic_at,
                "{context}: {name}, behind the panic, handled {handled}: it passed the \
                 handler it depends on"
            );
        }
    }
}

macro_rules! panic_cases {
    ($($test:ident: $policy:ident, $when:ident, $stage:expr;)*) => {
        $(
            #[test]
            fn $test() {
                panic_case(PanicPolicy::$policy, When::$when, $stage);
            }
        )*
    };
}

panic_cases! {
    halt_at_first_event_in_first_stage: Halt, FirstEvent, 0;
    halt_at_first_event_in_middle_stage: Halt, FirstEvent, 1;
    halt_at_first_event_in_last_stage: Halt, FirstEvent, 2;
    halt_mid_stream_in_first_stage: Halt, MiddleEvent, 0;
    halt_mid_stream_in_middle_stage: Halt, MiddleEvent, 1;
    halt_mid_stream_in_last_stage: Halt, MiddleEvent, 2;
    halt_policy_panic_on_shutdown_in_first_stage: Halt, OnShutdown, 0;
    halt_policy_panic_on_shutdown_in_middle_stage: Halt, OnShutdown, 1;
    halt_policy_panic_on_shutdown_in_last_stage: Halt, OnShutdown, 2;
    skip_first_event_in_first_stage: LogAndSkip, FirstEvent, 0;
    skip_first_event_in_middle_stage: LogAndSkip, FirstEvent, 1;
    skip_first_event_in_last_stage: LogAndSkip, FirstEvent, 2;
    skip_mid_stream_in_first_stage: LogAndSkip, MiddleEvent, 0;
    skip_mid_stream_in_middle_stage: LogAndSkip, MiddleEvent, 1;
    skip_mid_stream_in_last_stage: LogAndSkip, MiddleEvent, 2;
    skip_policy_panic_on_shutdown_in_first_stage: LogAndSkip, OnShutdown, 0;
    skip_policy_panic_on_shutdown_in_middle_stage: LogAndSkip, OnShutdown, 1;
    skip_policy_panic_on_shutdown_in_last_stage: LogAndSkip, OnShutdown, 2;
}

/// The cases above leave out BusySpin, which needs a core per spinning
/// thread: here one BusySpin handler (and the producer, two threads in all)
/// panics mid-stream, and the halt reaches the producer the same way.
#[test]
fn halt_with_a_busy_spin_handler() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "halt-busy-spin", || {
        let (report_to, reports) = mpsc::channel();
        let mut producer = build_single_producer(RING, Tick::default, BusySpin)
            .thread_name("pricer")
            .handle_events_with_handler(Recorder::new("pricer", 1, &report_to).panic_at(MIDDLE))
            .build()
            .expect("valid pipeline");
        drop(report_to);
        let (error, published) = publish_until_error(&mut producer);
        assert_eq!(error, PublishError::Halted);
        assert!(
            (MIDDLE + 1..=MIDDLE + RING as i64).contains(&published),
            "published {published}: the pricer never released {MIDDLE}"
        );
        assert_halt_sticks(&mut producer);
        let report = producer.shutdown();
        let pricer = handler(&report, "pricer");
        let message = format!("{EXPECTED_PANIC}: pricer fails at {MIDDLE}");
        assert_eq!(
            parts(pricer.panic.as_ref()),
            Some(("pricer", Some(MIDDLE), message.as_str()))
        );
        assert_eq!(pricer.events_handled, MIDDLE as u64);
        assert_eq!(collect_seen(&reports, 1)[0].events, MIDDLE as u64);
    });
}

/// Panics on every odd event; checks and counts the even ones.
struct OddPanicker {
    handled: Arc<AtomicU64>,
    price_sum: Arc<AtomicU64>,
    next_even: i64,
}

impl EventHandler<Tick> for OddPanicker {
    fn on_event(&mut self, tick: &Tick, sequence: i64, _: bool) {
        if sequence % 2 == 1 {
            panic!("{EXPECTED_PANIC}: odd {sequence}");
        }
        assert_eq!(sequence, self.next_even, "even events in order");
        assert_eq!(*tick, Tick::of(0, sequence as u64), "intact");
        self.next_even += 2;
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.price_sum.fetch_add(tick.price, Ordering::Relaxed);
    }
}

/// Under `LogAndSkip`, a handler that panics again and again skips exactly
/// the events it panicked on, reports the first, and neither its sibling nor
/// the stage behind it loses an event.
#[test]
fn log_and_skip_skips_exactly_the_panicking_events() {
    const EVENTS: u64 = 400;
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "log-and-skip", || {
        let (report_to, reports) = mpsc::channel();
        let handled = Arc::new(AtomicU64::new(0));
        let price_sum = Arc::new(AtomicU64::new(0));
        let mut producer = build_single_producer(16, Tick::default, Yielding::new())
            .on_handler_panic(PanicPolicy::LogAndSkip)
            .thread_name("odd")
            .handle_events_with_handler(OddPanicker {
                handled: Arc::clone(&handled),
                price_sum: Arc::clone(&price_sum),
                next_even: 0,
            })
            .thread_name("sibling")
            .handle_events_with_handler(Recorder::new("sibling", 1, &report_to))
            .and_then()
            .thread_name("behind")
            .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
            .build()
            .expect("valid pipeline");
        drop(report_to);
        let mut published = 0;
        while published < EVENTS {
            // Single publishes and batches of up to 5.
            let batch = (published % 5 + 1).min(EVENTS - published);
            let last = producer
                .batch_publish(batch as usize, |tick, sequence| {
                    tick.fill(0, sequence as u64)
                })
                .expect("no halt under LogAndSkip");
            published += batch;
            assert_eq!(last, published as i64 - 1);
        }
        let report = producer.shutdown();

        let odd = handler(&report, "odd");
        assert_eq!(
            (odd.events_handled, odd.events_skipped),
            (EVENTS / 2, EVENTS / 2)
        );
        let message = format!("{EXPECTED_PANIC}: odd 1");
        assert_eq!(
            parts(odd.panic.as_ref()),
            Some(("odd", Some(1), message.as_str())),
            "the first skipped event is reported"
        );
        assert_eq!(handled.load(Ordering::Relaxed), EVENTS / 2);
        let even_sum: u64 = (0..EVENTS).step_by(2).map(|n| Tick::of(0, n).price).sum();
        assert_eq!(price_sum.load(Ordering::Relaxed), even_sum);
        for name in ["sibling", "behind"] {
            let handler = handler(&report, name);
            assert_eq!(
                (
                    handler.events_handled,
                    handler.events_skipped,
                    &handler.panic
                ),
                (EVENTS, 0, &None),
                "{name}"
            );
        }
        for seen in collect_seen(&reports, 2) {
            assert_eq!(seen.events, EVENTS, "{}", seen.label);
        }
    });
}

/// Panics in `on_timeout` (counting its calls first).
struct PanicsOnTimeout(Arc<AtomicU64>);

impl EventHandler<Tick> for PanicsOnTimeout {
    fn on_event(&mut self, _: &Tick, _: i64, _: bool) {}
    fn on_timeout(&mut self, _: i64) {
        self.0.fetch_add(1, Ordering::AcqRel);
        panic!("{EXPECTED_PANIC}: heartbeat missed");
    }
}

/// A panic in `on_timeout` under `Halt` halts the pipeline like one in
/// `on_event`.
///
/// The halt is set once the panic has been caught, some time after
/// `on_timeout` started (and moved its counter): a publish in between may
/// succeed, so the test does not assert that none does. It asserts what
/// the contract promises: the producer gets `Halted` within a bounded time
/// (never a hang, never `TimedOut`), and it sticks; the halted handler starts
/// no event and calls `on_timeout` no more; the stage behind it, gated on a
/// handler that finished nothing, sees nothing; and the report says so.
#[test]
fn panic_in_on_timeout_halts() {
    const RING: usize = 4;
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "on-timeout-panic", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let timeouts = Arc::new(AtomicU64::new(0));
            let (report_to, reports) = mpsc::channel();
            let mut producer = wait
                .single(RING)
                .thread_name("heartbeat")
                .wait_timeout(Duration::from_millis(1))
                .handle_events_with_handler(PanicsOnTimeout(Arc::clone(&timeouts)))
                .and_then()
                .thread_name("behind")
                .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
                .build()
                .expect("valid pipeline");
            drop(report_to);
            wait_until(TEST_LIMIT, "the idle handler times out", || {
                timeouts.load(Ordering::Acquire) > 0
            });
            // Until the halt is visible, publishes succeed; the heartbeat
            // never finishes an event, so at most a ring of them does, and
            // the next waits on the full ring until the halt releases it.
            let (error, published) = publish_until_error(&mut producer);
            assert_eq!(error, PublishError::Halted, "{context}");
            assert!(
                published <= RING as i64,
                "{context}: published {published} into a ring of {RING} that no one released"
            );
            assert_halt_sticks(&mut producer);
            let report = producer.shutdown();
            let heartbeat = handler(&report, "heartbeat");
            assert_eq!(
                (heartbeat.events_handled, heartbeat.events_skipped),
                (0, 0),
                "{context}: the halted handler started no event"
            );
            let message = format!("{EXPECTED_PANIC}: heartbeat missed");
            assert_eq!(
                parts(heartbeat.panic.as_ref()),
                Some(("heartbeat", None, message.as_str())),
                "{context}"
            );
            assert_eq!(report.first_panic(), heartbeat.panic.as_ref());
            let behind = handler(&report, "behind");
            assert_eq!(
                (behind.events_handled, &behind.panic),
                (0, &None),
                "{context}: nothing passed the halted handler"
            );
            assert_eq!(collect_seen(&reports, 1)[0].events, 0, "{context}");
            assert_eq!(
                timeouts.load(Ordering::Acquire),
                1,
                "{context}: on_timeout ran once: the panic stopped the handler"
            );
        });
    });
}

/// A worker of a pool panics at `MIDDLE`: under `Halt` the producer gets
/// `Halted` and the stage behind stops before it; under `LogAndSkip` that one
/// event is skipped by the pool and still reaches the stage behind.
fn panicking_worker(policy: PanicPolicy) {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, &format!("worker-{policy:?}"), move || {
        under_every_wait_strategy(|wait| {
            let context = format!("{policy:?}, {}", wait.name());
            let halts = policy == PanicPolicy::Halt;
            let handled: Arc<Vec<AtomicU32>> =
                Arc::new((0..EVENTS).map(|_| AtomicU32::new(0)).collect());
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    let handled = Arc::clone(&handled);
                    move |tick: &Tick, sequence: i64, _: bool| {
                        assert_eq!(*tick, Tick::of(0, sequence as u64), "intact");
                        if sequence == MIDDLE {
                            panic!("{EXPECTED_PANIC}: worker fails at {sequence}");
                        }
                        handled[sequence as usize].fetch_add(1, Ordering::Relaxed);
                    }
                })
                .collect();
            let (report_to, reports) = mpsc::channel();
            let mut producer = wait
                .single(RING)
                .on_handler_panic(policy)
                .handle_events_with_workers(workers)
                .and_then()
                .thread_name("behind")
                .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let published = if halts {
                let (error, published) = publish_until_error(&mut producer);
                assert_eq!(error, PublishError::Halted, "{context}");
                assert_halt_sticks(&mut producer);
                published
            } else {
                for counter in 0..EVENTS as u64 {
                    producer
                        .publish(|tick| tick.fill(0, counter))
                        .expect("no halt under LogAndSkip");
                }
                EVENTS
            };
            let report = producer.shutdown();
            let panics: Vec<&HandlerPanic> = report
                .handlers
                .iter()
                .filter_map(|h| h.panic.as_ref())
                .collect();
            assert_eq!(
                panics.len(),
                1,
                "{context}: one worker panicked: {report:?}"
            );
            assert_eq!(panics[0].sequence, Some(MIDDLE), "{context}");
            assert_eq!(
                panics[0].message,
                format!("{EXPECTED_PANIC}: worker fails at {MIDDLE}")
            );
            assert!(
                panics[0].handler.starts_with("tickring-0-"),
                "{context}: {panics:?}"
            );
            let pool = &report.handlers[..3];
            let pool_handled: u64 = pool.iter().map(|h| h.events_handled).sum();
            let pool_skipped: u64 = pool.iter().map(|h| h.events_skipped).sum();
            let behind = collect_seen(&reports, 1).pop().expect("behind");
            assert_eq!(handled[MIDDLE as usize].load(Ordering::Relaxed), 0);
            if halts {
                assert_eq!(pool_skipped, 0, "{context}");
                assert!(pool_handled < published as u64, "{context}");
                assert!(behind.events <= MIDDLE as u64, "{context}: passed the pool");
            } else {
                assert_eq!(
                    (pool_handled, pool_skipped),
                    (EVENTS as u64 - 1, 1),
                    "{context}"
                );
                for (sequence, count) in handled.iter().enumerate() {
                    let expected = u32::from(sequence as i64 != MIDDLE);
                    assert_eq!(
                        count.load(Ordering::Relaxed),
                        expected,
                        "{context}: {sequence}"
                    );
                }
                assert_eq!(behind.events, EVENTS as u64, "{context}: the stage behind");
            }
            let behind_report = handler(&report, "behind");
            assert_eq!(behind_report.events_handled, behind.events);
        });
    });
}

#[test]
fn panicking_worker_halts_the_pipeline() {
    panicking_worker(PanicPolicy::Halt);
}

#[test]
fn panicking_worker_skips_only_its_event() {
    panicking_worker(PanicPolicy::LogAndSkip);
}

/// `Halted` sticks even while the ring has room: a halted pipeline handles
/// nothing more, so no publishing call may accept an event, whether or not
/// it would have had to wait. (The full-ring case is in the tests above.)
#[test]
fn after_a_halt_every_publishing_call_fails_even_with_room() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "halt-with-room", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let mut producer = wait
                .single(8)
                .handle_events_with(|_: &Tick, _, _| panic!("{EXPECTED_PANIC}: rejects all"))
                .build()
                .expect("valid pipeline");
            producer.publish(|tick| tick.fill(0, 0)).expect("alive");
            // A batch of 8 never fits beside the held event: it only ever
            // answers `Full` (alive) or `Halted`.
            wait_until(TEST_LIMIT, "the handler's panic halts the pipeline", || {
                producer.try_batch_publish(8, |_, _| unreachable!("no room for 8"))
                    == Err(TryPublishError::Halted)
            });
            // The panicking handler never released event 0; 7 slots are free.
            assert_eq!(
                producer.remaining_capacity(),
                7,
                "{context}: the ring has room"
            );
            assert_halt_sticks(&mut producer);
            drop(producer);

            let mut handle = wait
                .multi(8)
                .handle_events_with(|_: &Tick, _, _| panic!("{EXPECTED_PANIC}: rejects all"))
                .build()
                .expect("valid pipeline");
            handle.publish(|tick| tick.fill(0, 0)).expect("alive");
            wait_until(TEST_LIMIT, "the handler's panic halts the pipeline", || {
                handle.try_batch_publish(8, |_, _| unreachable!("no room for 8"))
                    == Err(TryPublishError::Halted)
            });
            assert_eq!(
                handle.remaining_capacity(),
                7,
                "{context}: the ring has room"
            );
            assert_multi_halt_sticks(&mut handle);
        });
    });
}

// ---------------------------------------------------------------------------
// A panicking `fill`

/// A `fill` that panics in the middle of `batch_publish` (or
/// `try_batch_publish`): the events filled before it stay published, the rest
/// of the claim is released, and the next publish continues with no gap, on
/// a ring of 8 wrapped several times. The handler must see every published
/// event once, in order, with its value. (The multi-producer rule, which
/// publishes the whole claim, is in `multi_producer.rs`.)
#[test]
fn a_panicking_batch_fill_keeps_what_it_filled_and_leaves_no_gap() {
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "a_panicking_batch_fill", || {
        let (sink, seen) = mpsc::channel::<(i64, u64)>();
        let mut producer = build_single_producer(8, || 0u64, Yielding::new())
            .handle_events_with(move |value: &u64, sequence, _| {
                sink.send((sequence, *value))
                    .expect("the test is listening");
            })
            .build()
            .expect("build");
        let mut expected: Vec<(i64, u64)> = Vec::new();
        for round in 0..12u64 {
            let first = producer.last_published() + 1;
            // Panics at the (round % 6)-th of 6 events.
            let fails_at = (round % 6) as i64;
            let value = |sequence: i64| 1_000 * round + (sequence - first) as u64;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let fill = |event: &mut u64, sequence: i64| {
                    if sequence - first == fails_at {
                        panic!("{EXPECTED_PANIC}: fill fails at {sequence}");
                    }
                    *event = value(sequence);
                };
                if round % 2 == 0 {
                    let _ = producer.batch_publish(6, fill);
                } else {
                    // A full ring refuses without calling `fill`; wait for room.
                    wait_until(TEST_LIMIT, "room for a batch of 6", || {
                        !matches!(
                            producer.try_batch_publish(6, fill),
                            Err(TryPublishError::Full)
                        )
                    });
                }
            }));
            assert!(outcome.is_err(), "round {round}: fill should have panicked");
            assert_eq!(
                producer.last_published(),
                first + fails_at - 1,
                "round {round}: what was filled before the panic is published, no more"
            );
            expected.extend((first..first + fails_at).map(|sequence| (sequence, value(sequence))));
            // The next publish takes the sequence right after.
            let next = producer
                .publish(|event| *event = u64::MAX - round)
                .expect("publish after a panicking fill");
            assert_eq!(next, first + fails_at, "round {round}: no gap, no reuse");
            expected.push((next, u64::MAX - round));
        }
        let report = producer.shutdown();
        assert!(report.first_panic().is_none(), "no handler panicked");
        let got: Vec<(i64, u64)> = seen.try_iter().collect();
        assert_eq!(
            got, expected,
            "every published event once, in order, intact"
        );
    });
}

// ---------------------------------------------------------------------------
// Producers blocked on a full ring

/// One producer thread blocks in `publish` on a full ring; another thread
/// drops the last-but-one handle meanwhile (no shutdown, no hang); then the
/// handler moves, the blocked publish completes, and dropping the last
/// handle drains every event.
#[test]
fn dropping_another_handle_while_a_producer_is_blocked_loses_nothing() {
    const RING: usize = 4;
    const TOTAL: u64 = 64;
    with_timeout(TEST_LIMIT, "blocked-drop", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let (report_to, reports) = mpsc::channel();
            let blocked = wait
                .multi(RING)
                .handle_events_with_handler(Recorder::new("held", 1, &report_to).hold_at(0, gate))
                .handle_events_with_handler(Recorder::new("beside", 1, &report_to))
                .and_then()
                .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let other = blocked.clone();
            let attempting = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicU64::new(0));
            let producer = {
                let (attempting, done) = (Arc::clone(&attempting), Arc::clone(&done));
                let mut handle = blocked;
                thread::spawn(move || {
                    for counter in 0..TOTAL {
                        attempting.store(counter, Ordering::Release);
                        handle
                            .publish(|tick| tick.fill(0, counter))
                            .expect("the pipeline is alive");
                        done.store(counter + 1, Ordering::Release);
                    }
                    drop(handle); // the last handle: drains and joins
                })
            };
            wait_until(TEST_LIMIT, "the producer blocks on the full ring", || {
                keeper.is_reached()
                    && attempting.load(Ordering::Acquire) == RING as u64
                    && other.remaining_capacity() == 0
            });
            thread::sleep(SETTLE);
            assert_eq!(
                done.load(Ordering::Acquire),
                RING as u64,
                "{context}: a publish completed into a full ring"
            );
            let dropper = thread::spawn(move || other.shutdown());
            assert!(
                join(dropper).is_none(),
                "{context}: the last-but-one handle does not shut the pipeline down"
            );
            thread::sleep(SETTLE);
            assert_eq!(
                done.load(Ordering::Acquire),
                RING as u64,
                "{context}: still blocked"
            );
            assert!(
                reports.try_recv().is_err(),
                "{context}: nothing shut down yet"
            );
            keeper.open();
            join(producer);
            // The last drop has joined every handler: their reports are in.
            let seen: Vec<Seen> = reports.try_iter().collect();
            assert_eq!(seen.len(), 3, "{context}: every handler shut down once");
            for seen in seen {
                assert_sound(&seen);
                assert_eq!(seen.events, TOTAL, "{context}: {} lost events", seen.label);
            }
        });
    });
}

/// Three producer threads block on a full ring held by a handler, which
/// then panics under `Halt`: each blocked `publish` returns `Halted`, and
/// every call after it does too, at once.
#[test]
fn a_halt_releases_producers_blocked_on_a_full_ring() {
    const RING: usize = 4;
    const PRODUCERS: usize = 3;
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "blocked-halt", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let (report_to, reports) = mpsc::channel();
            let first = wait
                .multi(RING)
                .thread_name("risk")
                .handle_events_with_handler(
                    Recorder::new("risk", PRODUCERS, &report_to)
                        .hold_at(0, gate)
                        .panic_at(0),
                )
                .thread_name("audit")
                .handle_events_with_handler(Recorder::new("audit", PRODUCERS, &report_to))
                .and_then()
                .thread_name("behind")
                .handle_events_with_handler(Recorder::new("behind", PRODUCERS, &report_to))
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let published = Arc::new(AtomicU64::new(0));
            let attempting = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..PRODUCERS)
                .map(|producer| {
                    let mut handle = first.clone();
                    let (published, attempting) = (Arc::clone(&published), Arc::clone(&attempting));
                    thread::spawn(move || {
                        let mut counter = 0;
                        loop {
                            attempting.fetch_add(1, Ordering::AcqRel);
                            match handle.publish(|tick| tick.fill(producer as u32, counter)) {
                                Ok(_) => {
                                    published.fetch_add(1, Ordering::AcqRel);
                                    attempting.fetch_sub(1, Ordering::AcqRel);
                                    counter += 1;
                                }
                                Err(error) => {
                                    assert_multi_halt_sticks(&mut handle);
                                    return (error, handle);
                                }
                            }
                        }
                    })
                })
                .collect();
            wait_until(TEST_LIMIT, "every producer blocks on the full ring", || {
                keeper.is_reached()
                    && published.load(Ordering::Acquire) == RING as u64
                    && attempting.load(Ordering::Acquire) == PRODUCERS as u64
            });
            thread::sleep(SETTLE);
            assert_eq!(
                published.load(Ordering::Acquire),
                RING as u64,
                "{context}: a publish completed into a full ring"
            );
            keeper.open(); // `risk` panics at event 0: the pipeline halts
            let handles: Vec<_> = threads
                .into_iter()
                .map(|thread| {
                    let (error, handle) = join(thread);
                    assert_eq!(error, PublishError::Halted, "{context}");
                    handle
                })
                .collect();
            assert_eq!(published.load(Ordering::Acquire), RING as u64, "{context}");
            drop(handles);
            let report = first.shutdown().expect("the last handle");
            let message = format!("{EXPECTED_PANIC}: risk fails at 0");
            assert_eq!(
                parts(report.first_panic()),
                Some(("risk", Some(0), message.as_str())),
                "{context}"
            );
            assert_eq!(handler(&report, "risk").events_handled, 0, "{context}");
            assert!(handler(&report, "audit").events_handled <= RING as u64);
            assert_eq!(
                handler(&report, "behind").events_handled,
                0,
                "{context}: nothing passed the halted handler"
            );
            let seen = collect_seen(&reports, 3);
            assert_eq!(seen_by(&seen, "behind").events, 0);
        });
    });
}

/// The single producer blocked on a full ring gets `Halted` when the
/// handler holding the ring panics.
#[test]
fn a_halt_releases_a_single_producer_blocked_on_a_full_ring() {
    const RING: usize = 4;
    silence_expected_panics();
    with_timeout(TEST_LIMIT, "blocked-halt-single", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let (report_to, reports) = mpsc::channel();
            let mut producer = wait
                .single(RING)
                .thread_name("risk")
                .handle_events_with_handler(
                    Recorder::new("risk", 1, &report_to)
                        .hold_at(2, gate)
                        .panic_at(2),
                )
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let returned = Arc::new(AtomicBool::new(false));
            let publisher = {
                let returned = Arc::clone(&returned);
                thread::spawn(move || {
                    let outcome = publish_until_error(&mut producer);
                    returned.store(true, Ordering::Release);
                    assert_halt_sticks(&mut producer);
                    (outcome, producer)
                })
            };
            wait_until(TEST_LIMIT, "the handler holds event 2", || {
                keeper.is_reached()
            });
            thread::sleep(SETTLE);
            assert!(
                !returned.load(Ordering::Acquire),
                "{context}: publish returned while the ring was full and the pipeline alive"
            );
            keeper.open();
            let ((error, published), producer) = join(publisher);
            assert_eq!(error, PublishError::Halted, "{context}");
            // Events 0 and 1 were released before the handler stopped at 2.
            // The ring held 0..=3, and 4 and 5 once 0 and 1 were released
            // (by a batch boundary, or when the handler halted).
            assert!(
                (RING as i64..=RING as i64 + 2).contains(&published),
                "{context}: published {published}"
            );
            let report = producer.shutdown();
            let risk = handler(&report, "risk");
            assert_eq!(risk.events_handled, 2, "{context}");
            assert_eq!(
                risk.panic
                    .as_ref()
                    .map(|panic| (panic.sequence, panic.handler.as_str())),
                Some((Some(2), "risk"))
            );
            assert_eq!(collect_seen(&reports, 1)[0].events, 2);
        });
    });
}

// ---------------------------------------------------------------------------
// Producer handles dropped from many threads at once

const DROPPING_THREADS: usize = 10;
const PER_THREAD: u64 = 100; // 10 × 100 fits the ring of 1,024: nobody blocks

/// Ten threads, each with a handle, publish, meet at a barrier and let go
/// of their handles at once (`drop` or `shutdown`); returns what each
/// `shutdown` returned, checking the drain: every handler and the poller
/// saw every event once, in each producer's order, and shut down once.
fn let_go_from_ten_threads(use_shutdown: bool) -> Vec<Option<ShutdownReport>> {
    let (keeper, gate) = Gate::closed();
    let (report_to, reports) = mpsc::channel();
    let last = (DROPPING_THREADS as u64 * PER_THREAD) as i64 - 1;
    let (mut poller, builder) = build_multi_producer(1024, Tick::default, Blocking::new())
        .thread_name("held")
        // Releases every event as soon as it is done: all but the last pass.
        .max_batch_size(1)
        .handle_events_with_handler(
            Recorder::new("held", DROPPING_THREADS, &report_to).hold_at(last, gate),
        )
        .thread_name("beside")
        .handle_events_with_handler(Recorder::new("beside", DROPPING_THREADS, &report_to))
        .and_then()
        .thread_name("behind")
        .handle_events_with_handler(Recorder::new("behind", DROPPING_THREADS, &report_to))
        .thread_name("tail")
        .event_poller();
    let first = builder.build().expect("valid pipeline");
    drop(report_to);
    let polling = thread::spawn(move || {
        let mut next = 0;
        loop {
            match poller.poll(|tick, sequence, _| {
                assert_eq!(sequence, next, "the poller sees every sequence in order");
                assert_eq!(*tick, Tick::of(tick.producer, tick.counter), "intact");
                next += 1;
                true
            }) {
                PollState::ShutDown => return next,
                PollState::Halted => panic!("halted"),
                _ => thread::yield_now(),
            }
        }
    });
    let barrier = Arc::new(Barrier::new(DROPPING_THREADS + 1));
    let mut handles: Vec<_> = (1..DROPPING_THREADS).map(|_| first.clone()).collect();
    handles.push(first);
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(producer, mut handle)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                for counter in 0..PER_THREAD {
                    handle
                        .publish(|tick| tick.fill(producer as u32, counter))
                        .expect("publish");
                }
                barrier.wait(); // every event is published
                barrier.wait(); // the test is ready: let go, all at once
                if use_shutdown {
                    handle.shutdown()
                } else {
                    drop(handle);
                    None
                }
            })
        })
        .collect();
    barrier.wait();
    // `held` holds the last event and the stage behind it waits for it
    // while the handles go: the drain must wait for both.
    wait_until(TEST_LIMIT, "the handler holds the last event", || {
        keeper.is_reached()
    });
    thread::sleep(SETTLE);
    barrier.wait();
    thread::sleep(SETTLE);
    keeper.open();
    let returned: Vec<_> = threads.into_iter().map(join).collect();
    // Every handle is gone, so the last one's drop has drained and joined:
    // every handler has shut down, once, having seen every event.
    let seen: Vec<Seen> = reports.try_iter().collect();
    assert_eq!(
        seen.len(),
        3,
        "every handler shut down exactly once: {seen:?}"
    );
    for seen in &seen {
        assert_sound(seen);
        assert_eq!(
            seen.next_counter,
            vec![PER_THREAD; DROPPING_THREADS],
            "{}: every producer's every event reached it before the drain ended",
            seen.label
        );
    }
    assert_eq!(join(polling), (DROPPING_THREADS as u64 * PER_THREAD) as i64);
    returned
}

#[test]
fn dropping_handles_from_ten_threads_at_once_drains_once() {
    with_timeout(TEST_LIMIT, "drop-from-ten", || {
        let returned = let_go_from_ten_threads(false);
        assert!(returned.iter().all(Option::is_none));
    });
}

#[test]
fn shutting_down_from_ten_threads_at_once_reports_once() {
    with_timeout(TEST_LIMIT, "shutdown-from-ten", || {
        let reports: Vec<ShutdownReport> = let_go_from_ten_threads(true)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(reports.len(), 1, "exactly one handle is the last");
        let names: Vec<&str> = reports[0]
            .handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["held", "beside", "behind"]);
        for handler in &reports[0].handlers {
            assert_eq!(handler.events_handled, DROPPING_THREADS as u64 * PER_THREAD);
            assert_eq!(handler.panic, None);
        }
    });
}
