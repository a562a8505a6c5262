//! Faults and bad input. None may hang: every test runs under a timeout.
//!
//! - A handler panicking at the first event, in the middle, or in
//!   `on_shutdown`, in the first, middle or last stage, under
//!   `PanicPolicy::Halt` and `LogAndSkip`, under every wait strategy but
//!   BusySpin: the report names the handler, the sequence and the message;
//!   under `Halt` the producer gets `PublishError::Halted`, and keeps getting
//!   it at once; under `LogAndSkip` exactly the panicking event is skipped.
//! - A panicking worker of a pool.
//! - A producer's `fill` panicking in the middle of a batch: what it filled
//!   stays published, the rest of the claim is released, no gap follows.
//! - A handler slower than the producer, through a ring of 2: back-pressure
//!   (`Full`, `TimedOut`, a blocked `publish`), never an overwritten or lost
//!   event.
//! - Producers blocked on a full ring: dropping another handle neither shuts
//!   the pipeline down nor hangs, and once the handler moves the blocked
//!   producer completes and the last handle's drop drains; a halt releases
//!   blocked producers with `Halted`.
//! - Producer handles dropped (or shut down) from ten threads at once: one
//!   drain, every event handled.
//! - Pinning to a core that does not exist, and every reachable `BuildError`.

mod common_stress;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use common_stress::{
    join, silence_expected_panics, wait_until, with_timeout, Gate, EXPECTED_PANIC,
};
use tickring::{
    available_cores, build_multi_producer, build_single_producer, producer_kind, Blocking,
    BuildError, Builder, EventHandler, FullRingWait, HandlerPanic, HandlerReport, MultiProducer,
    PanicPolicy, PollState, Producer, PublishError, ShutdownReport, Sleeping, TryPublishError,
    WaitStrategy, Yielding,
};

/// How long one test may take before it is declared hung (release; debug
/// builds get ten times as long).
const LIMIT: Duration = Duration::from_secs(60);

/// Long enough for a thread that could make progress to make it; used only
/// to give a wrong outcome the chance to show, never to assert speed.
const SETTLE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// The event and the recording handler

/// Every field is derived from (`producer`, `counter`), so a torn, stale or
/// overwritten slot shows.
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
    errors: u64,
    first_error: Option<String>,
}

impl Seen {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {error}", self.label));
        }
    }
}

/// A handler that checks every event (the next sequence, each producer's
/// events in order, intact content) and can be told to hold, dawdle or
/// panic. Sends what it saw from `on_shutdown`.
struct Recorder {
    seen: Seen,
    next_sequence: i64,
    /// Single producer: the counter is the sequence.
    single_producer: bool,
    hold_at: Option<(i64, Gate)>,
    panic_at: Option<i64>,
    panic_on_shutdown: bool,
    /// Sleep this long at every `dawdle_every`-th event, then re-check it.
    dawdle: Option<(i64, Duration)>,
    /// The highest sequence published, and the ring's size: no producer may
    /// publish `capacity` or more past an event a gating handler holds.
    published_up_to: Option<(Arc<AtomicI64>, i64)>,
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
            dawdle: None,
            published_up_to: None,
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

    fn dawdle(mut self, every: i64, pause: Duration) -> Self {
        self.dawdle = Some((every, pause));
        self
    }

    fn never_overwritten(mut self, published_up_to: &Arc<AtomicI64>, capacity: usize) -> Self {
        self.published_up_to = Some((Arc::clone(published_up_to), capacity as i64));
        self
    }

    fn check(&mut self, tick: &Tick, sequence: i64) {
        if sequence != self.next_sequence {
            self.seen.fail(format!(
                "got sequence {sequence}, expected {}",
                self.next_sequence
            ));
        }
        self.next_sequence = sequence + 1;
        if *tick != Tick::of(tick.producer, tick.counter) {
            self.seen
                .fail(format!("torn event at sequence {sequence}: {tick:?}"));
            return;
        }
        if self.single_producer && (tick.producer, tick.counter) != (0, sequence as u64) {
            self.seen
                .fail(format!("stale event at sequence {sequence}: {tick:?}"));
        }
        let Some(due) = self.seen.next_counter.get_mut(tick.producer as usize) else {
            self.seen
                .fail(format!("unknown producer at {sequence}: {tick:?}"));
            return;
        };
        if tick.counter != *due {
            let due = *due;
            self.seen.fail(format!(
                "at sequence {sequence}: producer {}'s event {} arrived when {due} was due",
                tick.producer, tick.counter
            ));
        }
        self.seen.next_counter[tick.producer as usize] = tick.counter + 1;
        if let Some((published_up_to, capacity)) = &self.published_up_to {
            // Acquire: pairs with the producer's store after its publish.
            let published = published_up_to.load(Ordering::Acquire);
            if published > sequence + capacity - 1 {
                self.seen.fail(format!(
                    "sequence {published} was published while this handler held {sequence} \
                     in a ring of {capacity}: its slot was reused"
                ));
            }
        }
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
        if let Some((every, pause)) = self.dawdle {
            if sequence % every == 0 {
                let before = *tick;
                thread::sleep(pause);
                if *tick != before {
                    self.seen.fail(format!(
                        "event {sequence} changed while its handler held it: {before:?} \
                         became {tick:?}"
                    ));
                }
            }
        }
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

/// Receives one [`Seen`] per recorder (each sent once, from `on_shutdown`),
/// sorted by label; checks none found a fault and each ran on its thread.
fn collect_seen(reports: &mpsc::Receiver<Seen>, recorders: usize) -> Vec<Seen> {
    let mut seen: Vec<Seen> = (0..recorders)
        .map(|_| {
            reports
                .recv_timeout(Duration::from_secs(10))
                .expect("every recorder runs on_shutdown")
        })
        .collect();
    assert!(
        reports.try_recv().is_err(),
        "a recorder ran on_shutdown more than once"
    );
    seen.sort_by_key(|seen| seen.label);
    for seen in &seen {
        assert_eq!(seen.errors, 0, "{:?}", seen.first_error);
        assert_eq!(seen.starts, 1, "{}: on_start runs once", seen.label);
        assert_eq!(
            seen.thread_at_start, seen.thread_at_shutdown,
            "{}: on_start and on_shutdown run on the handler's thread",
            seen.label
        );
    }
    seen
}

fn seen_by<'a>(seen: &'a [Seen], label: &str) -> &'a Seen {
    seen.iter()
        .find(|seen| seen.label == label)
        .unwrap_or_else(|| panic!("no report from '{label}'"))
}

fn handler<'a>(report: &'a ShutdownReport, name: &str) -> &'a HandlerReport {
    report
        .handler(name)
        .unwrap_or_else(|| panic!("'{name}' missing from {report:?}"))
}

/// Runs `case` under Yielding, Sleeping and Blocking, in turn.
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

    fn single(self, size: usize) -> Builder<Tick, AnyWait> {
        build_single_producer(size, Tick::default, self.wait()).producer_wait(self.full_ring())
    }

    fn multi(self, size: usize) -> Builder<Tick, AnyWait, producer_kind::Multi> {
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
/// many events were published. The caller's timeout bounds the loop.
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
            Err(PublishError::Halted),
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
            (Err(PublishError::Halted), false),
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

/// The pipeline: stage 0 `a0` and `a1`, stage 1 `b`, stage 2 `c0` and `c1`.
/// The faulty handler, named `faulty`, takes the place of the first handler
/// of its stage.
const STAGES: [&[&str]; 3] = [&["a0", "a1"], &["b"], &["c0", "c1"]];

fn panic_case(policy: PanicPolicy, when: When, faulty_stage: usize) {
    silence_expected_panics();
    let name = format!("{policy:?}-{when:?}-stage-{faulty_stage}");
    with_timeout(LIMIT, &name, move || {
        under_every_wait_strategy(|wait| {
            panic_case_with(wait, policy, when, faulty_stage);
        });
    });
}

fn panic_case_with(wait: Strategy, policy: PanicPolicy, when: When, faulty_stage: usize) {
    let context = format!(
        "{policy:?}, {when:?}, stage {faulty_stage}, {}",
        wait.name()
    );
    let (report_to, reports) = mpsc::channel();
    let mut builder = wait.single(RING).on_handler_panic(policy);
    let mut names = Vec::new();
    for (stage, handlers) in STAGES.iter().enumerate() {
        if stage > 0 {
            builder = builder.and_then();
        }
        for (position, &label) in handlers.iter().enumerate() {
            let faulty = stage == faulty_stage && position == 0;
            let label = if faulty { "faulty" } else { label };
            let mut recorder = Recorder::new(label, 1, &report_to);
            if faulty {
                recorder = match when.sequence() {
                    Some(sequence) => recorder.panic_at(sequence),
                    None => recorder.panic_on_shutdown(),
                };
            }
            builder = builder
                .handle_events_with_handler(recorder)
                .thread_name(label);
            names.push((stage, label));
        }
    }
    drop(report_to);
    let mut producer = builder.build().expect("valid pipeline");

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
    let expected_panic = HandlerPanic {
        handler: "faulty".into(),
        sequence: when.sequence(),
        message: match when.sequence() {
            Some(sequence) => format!("{EXPECTED_PANIC}: faulty fails at {sequence}"),
            None => format!("{EXPECTED_PANIC}: faulty fails on shutdown"),
        },
    };
    assert_eq!(report.first_panic(), Some(&expected_panic), "{context}");
    let faulty = handler(&report, "faulty");
    assert_eq!(faulty.panic.as_ref(), Some(&expected_panic), "{context}");
    let (handled, skipped) = match (policy, when.sequence()) {
        (_, None) => (EVENTS, 0),
        (PanicPolicy::Halt, Some(sequence)) => (sequence, 0),
        (PanicPolicy::LogAndSkip, Some(_)) => (EVENTS - 1, 1),
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

/// A worker of a pool panics at `MIDDLE`: under `Halt` the producer gets
/// `Halted` and the stage behind stops before it; under `LogAndSkip` that one
/// event is skipped by the pool and still reaches the stage behind.
fn panicking_worker(policy: PanicPolicy) {
    silence_expected_panics();
    with_timeout(LIMIT, &format!("worker-{policy:?}"), move || {
        under_every_wait_strategy(|wait| {
            let context = format!("{policy:?}, {}", wait.name());
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
                .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
                .thread_name("behind")
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let published = match policy {
                PanicPolicy::Halt => {
                    let (error, published) = publish_until_error(&mut producer);
                    assert_eq!(error, PublishError::Halted, "{context}");
                    assert_halt_sticks(&mut producer);
                    published
                }
                PanicPolicy::LogAndSkip => {
                    for counter in 0..EVENTS as u64 {
                        producer
                            .publish(|tick| tick.fill(0, counter))
                            .expect("no halt under LogAndSkip");
                    }
                    EVENTS
                }
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
            match policy {
                PanicPolicy::Halt => {
                    assert_eq!(pool_skipped, 0, "{context}");
                    assert!(pool_handled < published as u64, "{context}");
                    assert!(behind.events <= MIDDLE as u64, "{context}: passed the pool");
                }
                PanicPolicy::LogAndSkip => {
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
    with_timeout(LIMIT, "halt-with-room", || {
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
            wait_until(LIMIT, "the handler's panic halts the pipeline", || {
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
            wait_until(LIMIT, "the handler's panic halts the pipeline", || {
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
// A handler slower than the producer: back-pressure, never loss

const SLOW_EVENTS: u64 = 2_000;

/// A `fill` that panics in the middle of `batch_publish` (or
/// `try_batch_publish`): the events filled before it stay published, the rest
/// of the claim is released, and the next publish continues with no gap, on
/// a ring of 8 wrapped several times. The handler must see every published
/// event once, in order, with its value.
#[test]
fn a_panicking_batch_fill_keeps_what_it_filled_and_leaves_no_gap() {
    silence_expected_panics();
    with_timeout(LIMIT, "a_panicking_batch_fill", || {
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
                    while let Err(TryPublishError::Full) = producer.try_batch_publish(6, fill) {
                        thread::yield_now();
                    }
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

#[test]
fn slow_handler_back_pressures_a_single_producer_through_a_ring_of_2() {
    with_timeout(LIMIT, "slow-single", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let published_up_to = Arc::new(AtomicI64::new(-1));
            let (report_to, reports) = mpsc::channel();
            let mut producer = wait
                .single(2)
                .handle_events_with_handler(
                    Recorder::new("slow", 1, &report_to)
                        .hold_at(0, gate)
                        .dawdle(4, Duration::from_micros(100))
                        .never_overwritten(&published_up_to, 2),
                )
                .thread_name("slow")
                .handle_events_with_handler(
                    Recorder::new("fast", 1, &report_to).never_overwritten(&published_up_to, 2),
                )
                .thread_name("fast")
                .and_then()
                .handle_events_with_handler(Recorder::new("behind", 1, &report_to))
                .thread_name("behind")
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let publish = |producer: &mut Producer<Tick, AnyWait>, counter: u64, how: u64| {
                let sequence = match how % 3 {
                    0 => producer
                        .publish(|tick| tick.fill(0, counter))
                        .expect("publish"),
                    1 => producer
                        .batch_publish(1, |tick, sequence| tick.fill(0, sequence as u64))
                        .expect("batch_publish"),
                    _ => loop {
                        match producer.try_publish(|tick| tick.fill(0, counter)) {
                            Ok(sequence) => break sequence,
                            Err(TryPublishError::Full) => thread::yield_now(),
                            Err(error) => panic!("{context}: {error}"),
                        }
                    },
                };
                assert_eq!(sequence, counter as i64);
                // Release: pairs with the handlers' acquire.
                published_up_to.store(sequence, Ordering::Release);
            };
            // The slow handler holds event 0: two events fill the ring.
            publish(&mut producer, 0, 0);
            publish(&mut producer, 1, 0);
            wait_until(LIMIT, "the slow handler holds event 0", || {
                keeper.is_reached()
            });
            assert_eq!(producer.remaining_capacity(), 0, "{context}");
            assert_eq!(
                producer.try_publish(|_| unreachable!("no room: not filled")),
                Err(TryPublishError::Full),
                "{context}"
            );
            assert_eq!(
                producer.publish_timeout(SETTLE, |_| unreachable!("no room: not filled")),
                Err(PublishError::TimedOut),
                "{context}"
            );
            assert_eq!(
                producer.last_published(),
                1,
                "{context}: nothing more published"
            );
            keeper.open();
            for counter in 2..SLOW_EVENTS {
                publish(&mut producer, counter, counter);
            }
            let report = producer.shutdown();
            assert!(report.first_panic().is_none(), "{context}: {report:?}");
            for seen in collect_seen(&reports, 3) {
                assert_eq!(seen.events, SLOW_EVENTS, "{context}: {}", seen.label);
                assert_eq!(handler(&report, seen.label).events_handled, SLOW_EVENTS);
            }
        });
    });
}

#[test]
fn slow_handler_back_pressures_three_producers_through_a_ring_of_2() {
    const PRODUCERS: usize = 3;
    with_timeout(LIMIT, "slow-multi", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let published_up_to = Arc::new(AtomicI64::new(-1));
            let (report_to, reports) = mpsc::channel();
            let first = wait
                .multi(2)
                .handle_events_with_handler(
                    Recorder::new("slow", PRODUCERS, &report_to)
                        .hold_at(0, gate)
                        .dawdle(4, Duration::from_micros(100))
                        .never_overwritten(&published_up_to, 2),
                )
                .and_then()
                .handle_events_with_handler(Recorder::new("behind", PRODUCERS, &report_to))
                .build()
                .expect("valid pipeline");
            drop(report_to);
            let published = |sequence: i64| {
                // Release: pairs with the handlers' acquire.
                published_up_to.fetch_max(sequence, Ordering::Release);
            };
            // Producer 0's first two events fill the ring while event 0 is held.
            let mut zero = first.clone();
            for counter in 0..2 {
                published(
                    zero.try_publish(|tick| tick.fill(0, counter))
                        .expect("room"),
                );
            }
            wait_until(LIMIT, "the slow handler holds event 0", || {
                keeper.is_reached()
            });
            assert_eq!(first.remaining_capacity(), 0, "{context}");
            assert_eq!(
                zero.try_publish(|_| unreachable!("no room: not filled")),
                Err(TryPublishError::Full),
                "{context}"
            );
            assert_eq!(
                zero.try_batch_publish(1, |_, _| unreachable!("no room: not filled")),
                Err(TryPublishError::Full),
                "{context}"
            );
            assert_eq!(
                zero.publish_timeout(SETTLE, |_| unreachable!("no room: not filled")),
                Err(PublishError::TimedOut),
                "{context}"
            );
            let threads: Vec<_> = (0..PRODUCERS)
                .map(|producer| {
                    let mut handle = if producer == 0 {
                        zero.clone()
                    } else {
                        first.clone()
                    };
                    let published_up_to = Arc::clone(&published_up_to);
                    thread::spawn(move || {
                        let start = if producer == 0 { 2 } else { 0 };
                        for counter in start..SLOW_EVENTS {
                            let sequence = if counter % 2 == 0 {
                                handle.publish(|tick| tick.fill(producer as u32, counter))
                            } else {
                                handle
                                    .batch_publish(1, |tick, _| tick.fill(producer as u32, counter))
                            }
                            .expect("publish");
                            published_up_to.fetch_max(sequence, Ordering::Release);
                        }
                    })
                })
                .collect();
            drop(zero);
            // The producers are stuck behind event 0 until the gate opens.
            thread::sleep(SETTLE);
            keeper.open();
            threads.into_iter().for_each(join);
            let report = first.shutdown().expect("the last handle");
            assert!(report.first_panic().is_none(), "{context}: {report:?}");
            for seen in collect_seen(&reports, 2) {
                assert_eq!(
                    seen.next_counter,
                    vec![SLOW_EVENTS; PRODUCERS],
                    "{context}: {} saw every producer's every event",
                    seen.label
                );
                assert_eq!(seen.events, SLOW_EVENTS * PRODUCERS as u64, "{context}");
            }
        });
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
    with_timeout(LIMIT, "blocked-drop", || {
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
            wait_until(LIMIT, "the producer blocks on the full ring", || {
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
                assert_eq!(seen.errors, 0, "{context}: {:?}", seen.first_error);
                assert_eq!(seen.events, TOTAL, "{context}: {} lost events", seen.label);
                assert_eq!(seen.starts, 1);
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
    with_timeout(LIMIT, "blocked-halt", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let (report_to, reports) = mpsc::channel();
            let first = wait
                .multi(RING)
                .handle_events_with_handler(
                    Recorder::new("risk", PRODUCERS, &report_to)
                        .hold_at(0, gate)
                        .panic_at(0),
                )
                .thread_name("risk")
                .handle_events_with_handler(Recorder::new("audit", PRODUCERS, &report_to))
                .thread_name("audit")
                .and_then()
                .handle_events_with_handler(Recorder::new("behind", PRODUCERS, &report_to))
                .thread_name("behind")
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
            wait_until(LIMIT, "every producer blocks on the full ring", || {
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
            let expected = HandlerPanic {
                handler: "risk".into(),
                sequence: Some(0),
                message: format!("{EXPECTED_PANIC}: risk fails at 0"),
            };
            assert_eq!(report.first_panic(), Some(&expected), "{context}");
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
    with_timeout(LIMIT, "blocked-halt-single", || {
        under_every_wait_strategy(|wait| {
            let context = wait.name();
            let (keeper, gate) = Gate::closed();
            let (report_to, reports) = mpsc::channel();
            let mut producer = wait
                .single(RING)
                .handle_events_with_handler(
                    Recorder::new("risk", 1, &report_to)
                        .hold_at(2, gate)
                        .panic_at(2),
                )
                .thread_name("risk")
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
            wait_until(LIMIT, "the handler holds event 2", || keeper.is_reached());
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
    let first = build_multi_producer(1024, Tick::default, Blocking::new())
        .handle_events_with_handler(
            Recorder::new("held", DROPPING_THREADS, &report_to).hold_at(last, gate),
        )
        .thread_name("held")
        // Releases every event as soon as it is done: all but the last pass.
        .max_batch_size(1)
        .handle_events_with_handler(Recorder::new("beside", DROPPING_THREADS, &report_to))
        .thread_name("beside")
        .and_then()
        .handle_events_with_handler(Recorder::new("behind", DROPPING_THREADS, &report_to))
        .thread_name("behind")
        .add_poller("tail")
        .build()
        .expect("valid pipeline");
    drop(report_to);
    let mut poller = first.take_poller("tail").expect("added");
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
    wait_until(LIMIT, "the handler holds the last event", || {
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
        assert_eq!(seen.errors, 0, "{:?}", seen.first_error);
        assert_eq!(seen.starts, 1, "{}", seen.label);
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
    with_timeout(LIMIT, "drop-from-ten", || {
        let returned = let_go_from_ten_threads(false);
        assert!(returned.iter().all(Option::is_none));
    });
}

#[test]
fn shutting_down_from_ten_threads_at_once_reports_once() {
    with_timeout(LIMIT, "shutdown-from-ten", || {
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

// ---------------------------------------------------------------------------
// Bad configuration

/// Builds `$configure`d pipelines of both producer kinds; both must fail
/// with the same error, which is returned.
macro_rules! build_error {
    ($size:expr, |$builder:ident| $configure:expr) => {{
        let single = {
            let $builder = build_single_producer($size, || 0u64, Yielding::new());
            $configure
        }
        .build()
        .err();
        let multi = {
            let $builder = build_multi_producer($size, || 0u64, Yielding::new());
            $configure
        }
        .build()
        .err();
        assert_eq!(single, multi, "both producer kinds refuse alike");
        single.expect("build() refuses the configuration")
    }};
}

fn ignore(_: &u64, _: i64, _: bool) {}
fn ignore_mut(_: &mut u64, _: i64, _: bool) {}

/// Counts `on_start`s, to show that a refused build starts no handler.
struct CountsStarts(Arc<AtomicU32>);

impl EventHandler<u64> for CountsStarts {
    fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
    fn on_start(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn pinning_to_a_core_that_does_not_exist_is_refused() {
    with_timeout(LIMIT, "core-not-found", || {
        let cores = available_cores();
        let missing = cores.last().map_or(0, |last| last + 1);
        for core in [missing, 1 << 20, usize::MAX] {
            let starts = Arc::new(AtomicU32::new(0));
            let expected = |handler: &str| BuildError::CoreNotFound {
                handler: handler.into(),
                core,
                available: cores.clone(),
            };
            let error = build_error!(8, |builder| builder
                .handle_events_with_handler(CountsStarts(Arc::clone(&starts)))
                .handle_events_with(ignore)
                .thread_name("pinned")
                .pin_at_core(core));
            assert_eq!(error, expected("pinned"));
            let message = error.to_string();
            assert!(
                message.contains(&format!("core {core}"))
                    && message.contains(&format!("{cores:?}"))
                    && message.contains("pin_at_core"),
                "the message says what to change: {message}"
            );
            assert_eq!(
                starts.load(Ordering::Relaxed),
                0,
                "a refused build starts no handler"
            );
            // The pool's last worker, and a mutable stage, the same.
            let error = build_error!(8, |builder| builder
                .handle_events_with(ignore)
                .handle_events_with_workers([ignore, ignore])
                .pin_at_core(core));
            assert_eq!(error, expected("tickring-0-2"));
            let error = build_error!(8, |builder| builder
                .handle_events_with(ignore)
                .and_then()
                .handle_events_mut(ignore_mut)
                .pin_at_core(core));
            assert_eq!(error, expected("tickring-1-0"));
        }
    });
}

/// Panics while being created or started, for `HandlerStartPanicked`.
struct FailsToStart;

impl EventHandler<u64> for FailsToStart {
    fn on_event(&mut self, _: &u64, _: i64, _: bool) {}
    fn on_start(&mut self) {
        panic!("{EXPECTED_PANIC}: cannot open the journal");
    }
}

/// Every `BuildError` the API can produce, for both producer kinds, with a
/// message that says what to change. (`ThreadSpawn` needs the OS to refuse
/// a thread; `PinFailed` a core outside the process's CPU set, tested when
/// the machine has one.)
#[test]
fn every_reachable_build_error() {
    silence_expected_panics();
    with_timeout(LIMIT, "build-errors", || {
        let missing_core = available_cores().last().map_or(0, |last| last + 1);
        let cases: Vec<(BuildError, BuildError, &[&str])> = vec![
            (
                build_error!(0, |b| b.handle_events_with(ignore)),
                BuildError::InvalidRingSize { size: 0 },
                &["ring size 0", "power of two"],
            ),
            (
                build_error!(1000, |b| b.handle_events_with(ignore)),
                BuildError::InvalidRingSize { size: 1000 },
                &["1000", "1024"],
            ),
            (
                build_error!(1 << 41, |b| b.handle_events_with(ignore)),
                BuildError::InvalidRingSize { size: 1 << 41 },
                &["fits in memory"],
            ),
            (
                build_error!(8, |b| b),
                BuildError::NoHandlers,
                &["handle_events_with"],
            ),
            (
                build_error!(8, |b| b.handle_events_with(ignore).and_then()),
                BuildError::EmptyStage { stage: 1 },
                &["stage 1", "and_then"],
            ),
            (
                build_error!(8, |b| b
                    .handle_events_with(ignore)
                    .handle_events_mut(ignore_mut)),
                BuildError::MutableHandlerWithSibling {
                    handler: "tickring-0-1".into(),
                    stage: 0,
                },
                &["tickring-0-1", "alone in its stage"],
            ),
            (
                build_error!(8, |b| b.thread_name("early").handle_events_with(ignore)),
                BuildError::OptionWithoutHandler {
                    option: "thread_name",
                },
                &["thread_name()", "after"],
            ),
            (
                build_error!(8, |b| b
                    .handle_events_with_workers(Vec::<fn(&u64, i64, bool)>::new())),
                BuildError::EmptyWorkerPool { stage: 0 },
                &["stage 0", "at least one"],
            ),
            (
                build_error!(8, |b| b.add_poller("tail").pin_at_core(0)),
                BuildError::OptionNotForPoller {
                    option: "pin_at_core",
                    poller: "tail".into(),
                },
                &["pin_at_core()", "'tail'"],
            ),
            (
                build_error!(8, |b| b
                    .add_poller("tail")
                    .wait_timeout(Duration::from_millis(1))),
                BuildError::OptionNotForPoller {
                    option: "wait_timeout",
                    poller: "tail".into(),
                },
                &["wait_timeout()", "'tail'"],
            ),
            (
                build_error!(8, |b| b.handle_events_with(ignore).max_batch_size(0)),
                BuildError::InvalidMaxBatchSize {
                    handler: "tickring-0-0".into(),
                },
                &["max_batch_size(0)", "at least 1"],
            ),
            (
                build_error!(8, |b| b.handle_events_with(ignore).thread_name("nul\0name")),
                BuildError::InvalidThreadName {
                    name: "nul\0name".into(),
                },
                &["NUL"],
            ),
            (
                build_error!(8, |b| b
                    .handle_events_with(ignore)
                    .thread_name("twin")
                    .and_then()
                    .handle_events_with(ignore)
                    .thread_name("twin")),
                BuildError::DuplicateThreadName {
                    name: "twin".into(),
                },
                &["'twin'", "distinct"],
            ),
            (
                build_error!(8, |b| b
                    .handle_events_with(ignore)
                    .pin_at_core(missing_core)),
                BuildError::CoreNotFound {
                    handler: "tickring-0-0".into(),
                    core: missing_core,
                    available: available_cores(),
                },
                &["does not have"],
            ),
            (
                build_error!(8, |b| b.handle_events_with_handler(FailsToStart)),
                BuildError::HandlerStartPanicked {
                    handler: "tickring-0-0".into(),
                    message: format!("{EXPECTED_PANIC}: cannot open the journal"),
                },
                &["cannot open the journal", "on_start"],
            ),
            (
                build_error!(8, |b| b
                    .handle_events_with(ignore)
                    .handle_events_with_factory(|| -> fn(&u64, i64, bool) {
                        panic!("{EXPECTED_PANIC}: no market data licence")
                    })),
                BuildError::HandlerStartPanicked {
                    handler: "tickring-0-1".into(),
                    message: format!("{EXPECTED_PANIC}: no market data licence"),
                },
                &["no market data licence", "factory"],
            ),
        ];
        for (error, expected, fragments) in cases {
            assert_eq!(error, expected);
            let message = error.to_string();
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "{expected:?}: message {message:?} lacks {fragment:?}"
                );
            }
        }
        if let Some(core) = core_outside_cpu_set() {
            let error = build_error!(8, |b| b.handle_events_with(ignore).pin_at_core(core));
            assert_eq!(
                error,
                BuildError::PinFailed {
                    handler: "tickring-0-0".into(),
                    core
                }
            );
        }
    });
}

/// An online core this process may not run on (Linux, under taskset or a
/// cgroup CPU set), if there is one.
fn core_outside_cpu_set() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    let mut cores = Vec::new();
    for range in allowed.trim().split(',') {
        match range.split_once('-') {
            Some((first, last)) => cores.extend(first.parse::<usize>().ok()?..=last.parse().ok()?),
            None => cores.push(range.parse().ok()?),
        }
    }
    available_cores()
        .into_iter()
        .find(|core| !cores.contains(core))
}
