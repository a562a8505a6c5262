//! The DSL that describes a pipeline: stages of participants, each stage
//! gated on the one before, per-handler threads, pinning and batch limits.
//!
//! ```text
//! build_single_producer(size, factory, wait)   // or build_multi_producer
//!     .thread_name("decode")            // options configure the NEXT participant
//!     .handle_events_mut(decode)        // stage 0: alone, may write events
//!     .and_then()
//!     .handle_events_with(book)         // stage 1: these two run in parallel
//!     .pin_at_core(1)
//!     .handle_events_with(risk)
//!     .and_then()
//!     .handle_events_with(strategy)     // stage 2: after both of stage 1
//!     .build()?
//! ```
//!
//! Per-participant options come *before* the participant they configure, as
//! in the `disruptor` crate, and the builder's types refuse what would
//! configure nothing: an option must be followed by a participant, and
//! `and_then()` and `build()` exist only once the current stage has one.
//!
//! ```compile_fail
//! use tickring::{build_single_producer, Yielding};
//! // No handler: `build` does not exist yet.
//! let producer = build_single_producer(8, || 0u8, Yielding::new()).build();
//! ```
//!
//! ```compile_fail
//! use tickring::{build_single_producer, Yielding};
//! // A trailing option configures nothing: `build` does not exist after it.
//! let producer = build_single_producer(8, || 0u8, Yielding::new())
//!     .handle_events_with(|_: &u8, _, _| {})
//!     .pin_at_core(0)
//!     .build();
//! ```
//!
//! ```compile_fail
//! use tickring::{build_single_producer, Yielding};
//! // An empty stage: `and_then` needs a handler in the current stage.
//! let producer = build_single_producer(8, || 0u8, Yielding::new())
//!     .handle_events_with(|_: &u8, _, _| {})
//!     .and_then()
//!     .and_then();
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::affinity::{allowed_cores, available_cores};
use crate::barrier::SequenceBarrier;
use crate::error::BuildError;
use crate::handler::{EventHandler, MutEventHandler};
use crate::loom::sync::atomic::AtomicI64;
use crate::loom::sync::mpsc;
use crate::loom::thread;
use crate::multi_producer::MultiProducer;
use crate::pipeline::{Participant, Pipeline};
use crate::poller::EventPoller;
use crate::processor::{
    run, run_worker, thread_main, ProcessorContext, Reader, Readiness, WorkClaim, Writer,
};
use crate::producer::Producer;
use crate::report::{HandlerReport, PanicPolicy};
use crate::ring_buffer::{RingBuffer, SoleWriter};
use crate::sequence::Sequence;
use crate::sequencer::multi::MultiProducerSequencer;
use crate::sequencer::single::SingleProducerSequencer;
use crate::sequencer::FullRingWait;
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// The default `max_batch_size`: a handler releases the slots it finished at
/// least this often, however far behind it is.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 1024;

/// Marker types: which producer a [`Builder`] builds.
pub mod producer_kind {
    /// One producer ([`Producer`](crate::Producer)): no atomic RMW to claim.
    #[derive(Debug)]
    pub struct Single;
    /// Any number of producer handles ([`MultiProducer`](crate::MultiProducer)).
    #[derive(Debug)]
    pub struct Multi;
}

/// Marker types: what a [`Builder`] may do next.
pub mod builder_state {
    /// The current stage has no participant yet: add one before `and_then()`
    /// or `build()`.
    #[derive(Debug)]
    pub struct NeedsParticipant;
    /// The current stage has a participant: `and_then()` and `build()` exist.
    #[derive(Debug)]
    pub struct Ready;
    /// An option waits for the participant it configures.
    #[derive(Debug)]
    pub struct Configuring;
}

use builder_state::{Configuring, NeedsParticipant, Ready};

/// Starts describing a pipeline with one producer.
///
/// `size` is the number of slots (a power of two, at most
/// [`MAX_RING_SIZE`](crate::MAX_RING_SIZE)); `factory` makes every event up
/// front (here, on the calling thread), so no allocation happens once
/// `build()` returns; `wait` is how handlers wait for events. A bad `size`
/// is reported by `build()`.
///
/// ```
/// use tickring::{build_single_producer, EventProducer, Yielding};
///
/// let mut producer = build_single_producer(1024, || [0u8; 64], Yielding::new())
///     .handle_events_with(|event: &[u8; 64], _sequence, _end_of_batch| {
///         assert_eq!(event[0], event[63]);
///     })
///     .build()?;
/// producer.publish(|event| event.fill(7))?;
/// let report = producer.shutdown();
/// assert_eq!(report.handlers[0].events_handled, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build_single_producer<E, F, W>(
    size: usize,
    factory: F,
    wait: W,
) -> Builder<E, W, producer_kind::Single, NeedsParticipant>
where
    E: Send + Sync + 'static,
    F: FnMut() -> E,
    W: WaitStrategy,
{
    // One producer: stamps in sequence order.
    Builder::new(size, true, factory, wait)
}

/// Starts describing a pipeline that any number of threads publish into,
/// each through its own clone of the [`MultiProducer`] handle.
///
/// ```
/// use tickring::{build_multi_producer, EventProducer, Yielding};
///
/// let producer = build_multi_producer(8, || (0u32, 0u64), Yielding::new())
///     .handle_events_with(|_event: &(u32, u64), _, _| {})
///     .build()?;
/// let feeds: Vec<_> = (0..3u32)
///     .map(|feed| {
///         let mut producer = producer.clone();
///         std::thread::spawn(move || {
///             for n in 0..100 {
///                 producer.publish(|event| *event = (feed, n)).unwrap();
///             }
///         })
///     })
///     .collect();
/// for feed in feeds {
///     feed.join().unwrap();
/// }
/// let report = producer.shutdown().expect("the last handle reports");
/// assert_eq!(report.handlers[0].events_handled, 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build_multi_producer<E, F, W>(
    size: usize,
    factory: F,
    wait: W,
) -> Builder<E, W, producer_kind::Multi, NeedsParticipant>
where
    E: Send + Sync + 'static,
    F: FnMut() -> E,
    W: WaitStrategy,
{
    // Several producers stamp in the order their claims complete.
    Builder::new(size, false, factory, wait)
}

/// The thread body of one handler, made where its type is known so the
/// batch loop is monomorphized; boxed only to sit in the builder's list.
type HandlerBody<E, W> =
    Box<dyn FnOnce(ProcessorContext<E, W>, Readiness, Option<usize>) -> HandlerReport + Send>;

/// The options given since the last participant; the next one takes them.
#[derive(Debug, Default, Clone)]
struct Options {
    name: Option<String>,
    core: Option<usize>,
    max_batch_size: Option<usize>,
    timeout: Option<Duration>,
}

struct ParticipantSpec<E, W> {
    name: String,
    core: Option<usize>,
    /// At least 1 and at most the capacity (a zero is a misuse).
    max_batch_size: i64,
    timeout: Option<Duration>,
    mutable: bool,
    sequence: Arc<Sequence>,
    /// `None` for a poller: it has no thread.
    body: Option<HandlerBody<E, W>>,
}

/// Halts the pipeline if the builder is dropped (or fails) before `build()`
/// succeeds, so a poller taken from it reports `Halted` instead of `Idle`
/// forever.
struct HaltUnlessBuilt<E, W: WaitStrategy>(Option<Arc<Shared<E, W>>>);

impl<E, W: WaitStrategy> Drop for HaltUnlessBuilt<E, W> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.halt();
        }
    }
}

/// What `build()` assembled, before it becomes a producer.
struct Assembled<E, W> {
    pipeline: Pipeline<E, W>,
    /// The last stage's sequences: the producer may not lap them.
    gating_sequences: Box<[Arc<Sequence>]>,
    full_ring_wait: FullRingWait,
}

/// A pipeline being described; see [`build_single_producer`] and
/// [`build_multi_producer`]. `K` is the producer kind, `S` what may come
/// next ([`builder_state`]).
#[must_use = "a builder does nothing until build()"]
pub struct Builder<E, W: WaitStrategy, K, S> {
    shared: Arc<Shared<E, W>>,
    /// Why the ring could not be made, reported by `build()`.
    size_error: Option<BuildError>,
    /// Stages in order; participants within a stage run in parallel.
    stages: Vec<Vec<ParticipantSpec<E, W>>>,
    pending: Options,
    /// The first misuse of the DSL, reported by `build()`.
    misuse: Option<BuildError>,
    panic_policy: PanicPolicy,
    full_ring_wait: FullRingWait,
    unbuilt: HaltUnlessBuilt<E, W>,
    marker: PhantomData<(K, S)>,
}

impl<E, W, K> Builder<E, W, K, NeedsParticipant>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// `in_order`: one producer, whose stamps follow sequence order.
    fn new(size: usize, in_order: bool, mut factory: impl FnMut() -> E, wait: W) -> Self {
        let (ring, size_error) = match RingBuffer::new(size, in_order, &mut factory) {
            Ok(ring) => (ring, None),
            // A one-slot stand-in, halted at once: pollers taken from this
            // builder report `Halted`, and `build()` reports the error.
            Err(error) => (
                RingBuffer::new(1, in_order, &mut factory).expect("one slot is a valid size"),
                Some(error),
            ),
        };
        let shared = Arc::new(Shared::new(ring, wait));
        if size_error.is_some() {
            shared.halt();
        }
        Self {
            unbuilt: HaltUnlessBuilt(Some(Arc::clone(&shared))),
            shared,
            size_error,
            stages: vec![Vec::new()],
            pending: Options::default(),
            misuse: None,
            panic_policy: PanicPolicy::default(),
            full_ring_wait: FullRingWait::default(),
            marker: PhantomData,
        }
    }
}

impl<E, W, K, S> Builder<E, W, K, S>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// Adds a closure handler to the current stage: `|event, sequence,
    /// end_of_batch|`. Handlers in one stage see every event, in parallel.
    pub fn handle_events_with<F>(self, handler: F) -> Builder<E, W, K, Ready>
    where
        F: FnMut(&E, i64, bool) + Send + 'static,
    {
        self.handle_events_with_handler(handler)
    }

    /// Adds an [`EventHandler`] to the current stage.
    pub fn handle_events_with_handler<H>(self, handler: H) -> Builder<E, W, K, Ready>
    where
        H: EventHandler<E> + Send + 'static,
    {
        self.push_thread(false, move |context, readiness, core| {
            thread_main(context, readiness, core, move |_| Reader(handler), run)
        })
    }

    /// Adds a handler created *on its own thread* by `make`, so it need not
    /// be `Send` (it may hold `Rc`, thread-local buffers, a pinned arena).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tickring::{build_single_producer, EventHandler, Yielding};
    ///
    /// struct Local(Rc<std::cell::Cell<u64>>); // Rc: not Send
    /// impl EventHandler<u64> for Local {
    ///     fn on_event(&mut self, event: &u64, _: i64, _: bool) { self.0.set(self.0.get() + event) }
    /// }
    /// let producer = build_single_producer(8, || 1u64, Yielding::new())
    ///     .handle_events_with_factory(|| Local(Rc::new(std::cell::Cell::new(0))))
    ///     .build()?;
    /// # drop(producer);
    /// # Ok::<(), tickring::BuildError>(())
    /// ```
    pub fn handle_events_with_factory<H, M>(self, make: M) -> Builder<E, W, K, Ready>
    where
        H: EventHandler<E> + 'static,
        M: FnOnce() -> H + Send + 'static,
    {
        self.push_thread(false, move |context, readiness, core| {
            thread_main(context, readiness, core, move |_| Reader(make()), run)
        })
    }

    /// Adds a closure that may modify events: `|event: &mut E, sequence,
    /// end_of_batch|`. It must be alone in its stage (`build()` checks); the
    /// stages after it see what it wrote.
    pub fn handle_events_mut<F>(self, handler: F) -> Builder<E, W, K, Ready>
    where
        F: FnMut(&mut E, i64, bool) + Send + 'static,
    {
        self.handle_events_mut_handler(handler)
    }

    /// Adds a [`MutEventHandler`]; it must be alone in its stage.
    pub fn handle_events_mut_handler<H>(self, handler: H) -> Builder<E, W, K, Ready>
    where
        H: MutEventHandler<E> + Send + 'static,
    {
        self.handle_events_mut_with_factory(move || handler)
    }

    /// Adds a [`MutEventHandler`] created on its own thread by `make`.
    pub fn handle_events_mut_with_factory<H, M>(self, make: M) -> Builder<E, W, K, Ready>
    where
        H: MutEventHandler<E> + 'static,
        M: FnOnce() -> H + Send + 'static,
    {
        self.push_thread(true, move |context, readiness, core| {
            thread_main(
                context,
                readiness,
                core,
                move |context| Writer {
                    handler: make(),
                    sole: context
                        .sole_writer
                        .take()
                        .expect("build() proves every mutable handler alone in its stage"),
                },
                run,
            )
        })
    }

    /// Adds a worker pool to the current stage: each event goes to exactly
    /// one of the workers (whichever is free), each on its own thread. The
    /// next stage is gated on the whole pool. Options given before it
    /// configure every worker; a `thread_name` gets a `-<n>` suffix per
    /// worker. An empty pool is a [`BuildError::EmptyWorkerPool`].
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use tickring::{build_single_producer, EventProducer, Yielding};
    ///
    /// let handled = Arc::new(AtomicU64::new(0));
    /// let workers: Vec<_> = (0..2)
    ///     .map(|_| {
    ///         let handled = Arc::clone(&handled);
    ///         move |_order: &u64, _sequence: i64, _end_of_batch: bool| {
    ///             handled.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .collect();
    /// let mut producer = build_single_producer(64, || 0u64, Yielding::new())
    ///     .thread_name("orders")
    ///     .handle_events_with_workers(workers)
    ///     .build()?;
    /// for order in 0..1_000 {
    ///     producer.publish(|event| *event = order)?;
    /// }
    /// let report = producer.shutdown();
    /// assert_eq!(report.handlers[1].name, "orders-1");
    /// assert_eq!(handled.load(Ordering::Relaxed), 1_000); // once each, not twice
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_events_with_workers<H, I>(mut self, workers: I) -> Builder<E, W, K, Ready>
    where
        H: EventHandler<E> + Send + 'static,
        I: IntoIterator<Item = H>,
    {
        let options = std::mem::take(&mut self.pending);
        let work: Arc<WorkClaim> = Arc::new(WorkClaim::new(AtomicI64::new(0)));
        let mut count = 0;
        for (index, worker) in workers.into_iter().enumerate() {
            count += 1;
            let work = Arc::clone(&work);
            let mut worker_options = options.clone();
            worker_options.name = options.name.as_ref().map(|name| format!("{name}-{index}"));
            self.pending = worker_options;
            self = self
                .push_thread(false, move |context, readiness, core| {
                    thread_main(
                        context,
                        readiness,
                        core,
                        move |_| Reader(worker),
                        |context, consumer| run_worker(context, &work, consumer),
                    )
                })
                .retype();
        }
        if count == 0 {
            let stage = self.stages.len() - 1;
            self.misuse
                .get_or_insert(BuildError::EmptyWorkerPool { stage });
        }
        self.retype()
    }

    /// Adds an [`EventPoller`] to the current stage and returns it: a
    /// participant with no thread, consumed by calling `poll` from the
    /// caller's own loop. Options before it may name it (`thread_name`) and
    /// bound its batches (`max_batch_size`); `pin_at_core` and
    /// `wait_timeout` do not apply ([`BuildError::OptionNotForPoller`]).
    ///
    /// Until `build()` succeeds the poller sees nothing; if `build()` fails
    /// or the builder is dropped, it reports [`PollState::Halted`](crate::PollState::Halted).
    pub fn event_poller(mut self) -> (EventPoller<E, W>, Builder<E, W, K, Ready>) {
        let (options, name) = self.take_pending();
        let stage = self.stages.len() - 1;
        let option = match (options.core, options.timeout) {
            (Some(_), _) => Some("pin_at_core"),
            (_, Some(_)) => Some("wait_timeout"),
            _ => None,
        };
        if let Some(option) = option {
            self.misuse.get_or_insert(BuildError::OptionNotForPoller {
                option,
                poller: name.clone(),
            });
        }
        let (sequence, max_batch_size) = self.push_spec(name.clone(), options, false, None);
        let poller = EventPoller::new(
            name,
            Arc::clone(&self.shared),
            SequenceBarrier::new(self.upstream_sequences()),
            sequence,
            max_batch_size,
            stage,
        );
        (poller, self.retype())
    }

    /// Pins the next participant's thread to core `id` (one of
    /// [`allowed_cores`](crate::allowed_cores)); `build()` refuses a core the
    /// machine does not have or the process may not use.
    ///
    /// Takes a `usize` or an `Option<usize>`, so one chain serves a machine
    /// with cores to spare and one without (`None` leaves the thread
    /// unpinned):
    ///
    /// ```
    /// use tickring::{allowed_cores, build_single_producer, Yielding};
    /// // A core of its own for the handler only where there is one to spare.
    /// let core = allowed_cores().get(1).copied();
    /// let producer = build_single_producer(64, || 0u64, Yielding::new())
    ///     .pin_at_core(core)
    ///     .handle_events_with(|_: &u64, _, _| {})
    ///     .build()?;
    /// # drop(producer);
    /// # Ok::<(), tickring::BuildError>(())
    /// ```
    pub fn pin_at_core(mut self, id: impl Into<Option<usize>>) -> Builder<E, W, K, Configuring> {
        self.pending.core = id.into();
        self.retype()
    }

    /// Names the next participant's thread (default `tickring-<stage>-<n>`);
    /// the name also labels it in reports and lags.
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder<E, W, K, Configuring> {
        self.pending.name = Some(name.into());
        self.retype()
    }

    /// Caps how many events the next participant takes in one batch before
    /// releasing them (default [`DEFAULT_MAX_BATCH_SIZE`]). Any value from 1
    /// works; values above the ring's capacity act as the capacity. Zero is
    /// a [`BuildError::InvalidMaxBatchSize`].
    pub fn max_batch_size(mut self, events: usize) -> Builder<E, W, K, Configuring> {
        self.pending.max_batch_size = Some(events);
        self.retype()
    }

    /// Calls the next handler's `on_timeout` whenever it has waited `timeout`
    /// for an event; it then waits again. Any `Duration` works (one too large
    /// to add to the clock never expires).
    pub fn wait_timeout(mut self, timeout: Duration) -> Builder<E, W, K, Configuring> {
        self.pending.timeout = Some(timeout);
        self.retype()
    }

    /// What a handler panic does (default [`PanicPolicy::Halt`]).
    pub fn on_handler_panic(mut self, policy: PanicPolicy) -> Self {
        self.panic_policy = policy;
        self
    }

    /// How producers wait while the ring is full (default
    /// [`FullRingWait::Yield`]).
    pub fn producer_wait(mut self, policy: FullRingWait) -> Self {
        self.full_ring_wait = policy;
        self
    }

    fn retype<T>(self) -> Builder<E, W, K, T> {
        Builder {
            shared: self.shared,
            size_error: self.size_error,
            stages: self.stages,
            pending: self.pending,
            misuse: self.misuse,
            panic_policy: self.panic_policy,
            full_ring_wait: self.full_ring_wait,
            unbuilt: self.unbuilt,
            marker: PhantomData,
        }
    }

    /// The sequences of the stage before the current one.
    fn upstream_sequences(&self) -> Box<[Arc<Sequence>]> {
        let stages = self.stages.len();
        if stages < 2 {
            return Box::new([]);
        }
        self.stages[stages - 2]
            .iter()
            .map(|spec| Arc::clone(&spec.sequence))
            .collect()
    }

    /// Records a participant with the pending options; returns its sequence
    /// and its (clamped) batch bound.
    fn push_spec(
        &mut self,
        name: String,
        options: Options,
        mutable: bool,
        body: Option<HandlerBody<E, W>>,
    ) -> (Arc<Sequence>, i64) {
        let requested = options.max_batch_size.unwrap_or(DEFAULT_MAX_BATCH_SIZE);
        if requested == 0 {
            self.misuse.get_or_insert(BuildError::InvalidMaxBatchSize {
                handler: name.clone(),
            });
        }
        // A batch never exceeds the ring, so `next + max_batch_size` cannot
        // overflow however large the request.
        let capacity = self.shared.ring.capacity();
        let max_batch_size = i64::try_from(requested)
            .unwrap_or(i64::MAX)
            .clamp(1, capacity);
        let sequence = Arc::new(Sequence::new());
        self.stages
            .last_mut()
            .expect("there is always a current stage")
            .push(ParticipantSpec {
                name,
                core: options.core,
                max_batch_size,
                timeout: options.timeout,
                mutable,
                sequence: Arc::clone(&sequence),
                body,
            });
        (sequence, max_batch_size)
    }

    fn push_thread(
        mut self,
        mutable: bool,
        body: impl FnOnce(ProcessorContext<E, W>, Readiness, Option<usize>) -> HandlerReport
            + Send
            + 'static,
    ) -> Builder<E, W, K, Ready> {
        let (options, name) = self.take_pending();
        self.push_spec(name, options, mutable, Some(Box::new(body)));
        self.retype()
    }

    /// The options given for the participant being added, and its name
    /// (`thread_name`, or `tickring-<stage>-<position>`).
    fn take_pending(&mut self) -> (Options, String) {
        let options = std::mem::take(&mut self.pending);
        let (stage, position) = (
            self.stages.len() - 1,
            self.stages.last().map_or(0, Vec::len),
        );
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| format!("tickring-{stage}-{position}"));
        (options, name)
    }
}

impl<E, W, K> Builder<E, W, K, Ready>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// Starts a new stage: the participants added next see an event only
    /// after every participant of the current stage has finished with it.
    pub fn and_then(mut self) -> Builder<E, W, K, NeedsParticipant> {
        self.stages.push(Vec::new());
        self.retype()
    }

    fn validate(&mut self) -> Result<(), BuildError> {
        if let Some(error) = self.size_error.take().or_else(|| self.misuse.take()) {
            return Err(error);
        }
        let mut names = std::collections::HashSet::new();
        let (cores, allowed) = (available_cores(), allowed_cores());
        for (stage_index, stage) in self.stages.iter().enumerate() {
            for spec in stage {
                let name = spec.name.clone();
                if spec.mutable && stage.len() > 1 {
                    return Err(BuildError::MutableHandlerWithSibling {
                        handler: name,
                        stage: stage_index,
                    });
                }
                if let Some(core) = spec.core {
                    if !cores.contains(&core) {
                        return Err(BuildError::CoreNotFound {
                            handler: name,
                            core,
                            available: cores.clone(),
                        });
                    }
                    if !allowed.contains(&core) {
                        return Err(BuildError::PinFailed {
                            handler: name,
                            core,
                        });
                    }
                }
                if name.contains('\0') {
                    return Err(BuildError::InvalidThreadName { name });
                }
                if !names.insert(name.clone()) {
                    return Err(BuildError::DuplicateThreadName { name });
                }
            }
        }
        Ok(())
    }

    /// Validates, starts every handler's thread (pinned, named, `on_start`
    /// run) and waits until each has started; on any failure stops what
    /// started and returns the error, leaving nothing running.
    fn assemble(mut self) -> Result<Assembled<E, W>, BuildError> {
        self.validate()?;
        let shared = Arc::clone(&self.shared);
        let (started, readiness) = mpsc::channel();
        let mut participants = Vec::new();
        let mut threads = Vec::new();
        let mut failure = None;
        let last_stage = self.stages.len() - 1;
        // Threads are what halts a running pipeline (a handler's panic, or
        // an unwind out of a tickring thread): a thread alone in its
        // pipeline needs no halt check between its events.
        let thread_count = self
            .stages
            .iter()
            .flatten()
            .filter(|spec| spec.body.is_some())
            .count();
        if thread_count == 0 {
            // Pollers only: nothing can halt the pipeline once it is built,
            // so they need no halt check between events.
            shared.ring.state.set_no_threads();
        }
        let mut upstream: Box<[Arc<Sequence>]> = Box::new([]);
        for (stage_index, stage) in std::mem::take(&mut self.stages).into_iter().enumerate() {
            let stage_sequences: Box<[Arc<Sequence>]> = stage
                .iter()
                .map(|spec| Arc::clone(&spec.sequence))
                .collect();
            let sole_in_stage = stage.len() == 1;
            for spec in stage {
                participants.push(Participant {
                    name: spec.name.clone(),
                    sequence: Arc::clone(&spec.sequence),
                });
                let Some(body) = spec.body else { continue };
                if failure.is_some() {
                    continue;
                }
                let sole_writer = (spec.mutable && sole_in_stage).then(|| {
                    // SAFETY: invariant 3 — `validate` refused a mutable
                    // handler with a sibling, this one is alone in its
                    // stage, and every stage is gated on the one before.
                    unsafe { SoleWriter::new() }
                });
                let context = ProcessorContext {
                    name: spec.name.clone(),
                    shared: Arc::clone(&shared),
                    barrier: SequenceBarrier::new(upstream.clone()),
                    sequence: spec.sequence,
                    max_batch_size: spec.max_batch_size,
                    timeout: spec.timeout,
                    panic_policy: self.panic_policy,
                    has_dependents: stage_index != last_stage,
                    sole_writer,
                    others_may_halt: thread_count > 1,
                };
                let ready = Readiness::new(spec.name.clone(), started.clone());
                let core = spec.core;
                match thread::Builder::new()
                    .name(spec.name.clone())
                    .spawn(move || body(context, ready, core))
                {
                    Ok(join) => threads.push((spec.name, join)),
                    Err(error) => {
                        failure = Some(BuildError::ThreadSpawn {
                            handler: spec.name,
                            message: error.to_string(),
                        });
                    }
                }
            }
            upstream = stage_sequences;
        }
        drop(started);
        for _ in 0..threads.len() {
            match readiness.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                // Every sender is gone: each thread reported (see `Readiness`).
                Err(_) => break,
            }
        }
        if let Some(error) = failure {
            shared.halt();
            for (_, join) in threads {
                let _ = join.join();
            }
            return Err(error);
        }
        self.unbuilt.0 = None;
        Ok(Assembled {
            pipeline: Pipeline::new(shared, participants, threads),
            gating_sequences: upstream,
            full_ring_wait: self.full_ring_wait,
        })
    }
}

impl<E, W> Builder<E, W, producer_kind::Single, Ready>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// Validates the pipeline, starts every handler's thread (pinned, named,
    /// `on_start` run) and returns the producer.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for any invalid configuration (ring size, a mutable
    /// handler with a sibling, a core, a thread name, a batch bound of zero,
    /// an empty worker pool, an option a poller cannot take) or a handler
    /// thread that could not start. Nothing is left running then.
    pub fn build(self) -> Result<Producer<E, W>, BuildError> {
        let capacity = self.shared.ring.capacity();
        let parts = self.assemble()?;
        let sequencer = SingleProducerSequencer::new(capacity, parts.gating_sequences);
        Ok(Producer::new(
            sequencer,
            parts.pipeline,
            parts.full_ring_wait,
        ))
    }
}

impl<E, W> Builder<E, W, producer_kind::Multi, Ready>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// As the single-producer `build()`, returning the first handle of a
    /// multi-producer pipeline; clone it for each publishing thread.
    ///
    /// # Errors
    ///
    /// As the single-producer `build()`.
    pub fn build(self) -> Result<MultiProducer<E, W>, BuildError> {
        let capacity = self.shared.ring.capacity();
        let parts = self.assemble()?;
        let sequencer = MultiProducerSequencer::new(capacity, parts.gating_sequences);
        Ok(MultiProducer::new(
            sequencer,
            parts.pipeline,
            parts.full_ring_wait,
        ))
    }
}

impl<E, W: WaitStrategy, K, S> std::fmt::Debug for Builder<E, W, K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("capacity", &self.shared.ring.capacity())
            .field(
                "participants_per_stage",
                &self.stages.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("panic_policy", &self.panic_policy)
            .field("full_ring_wait", &self.full_ring_wait)
            .finish_non_exhaustive()
    }
}
