//! The DSL that describes a pipeline: stages of handlers, each stage gated on
//! the one before, per-handler threads, pinning and batch limits. `build()`
//! validates everything into a [`BuildError`] before a thread starts.
//!
//! ```text
//! build_single_producer(size, factory, wait)   // or build_multi_producer
//!     .handle_events_mut(decode)        // stage 0: alone, may write events
//!     .and_then()
//!     .handle_events_with(book)         // stage 1: these two run in parallel
//!     .handle_events_with(risk)
//!     .and_then()
//!     .handle_events_with(strategy)     // stage 2: after both of stage 1
//!     .build()?
//! ```

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::affinity::{available_cores, pin_current_thread};
use crate::barrier::SequenceBarrier;
use crate::error::BuildError;
use crate::handler::{EventHandler, MutEventHandler};
use crate::loom::sync::atomic::AtomicI64;
use crate::loom::sync::mpsc;
use crate::loom::thread;
use crate::multi_producer::MultiProducer;
use crate::pipeline::{Participant, Pipeline, PipelineState};
use crate::poller::EventPoller;
use crate::processor::{
    guarded, run, run_worker, Consume, ProcessorContext, Reader, WorkClaim, Writer,
};
use crate::producer::Producer;
use crate::report::{HandlerReport, PanicPolicy};
use crate::ring_buffer::RingBuffer;
use crate::sequence::Sequence;
use crate::sequencer::multi::MultiProducerSequencer;
use crate::sequencer::single::SingleProducerSequencer;
use crate::sequencer::FullRingWait;
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

/// Starts describing a pipeline with one producer.
///
/// `size` is the number of slots (a power of two); `factory` makes every
/// event up front, so no allocation happens once `build()` returns; `wait`
/// is how handlers wait for events.
///
/// ```
/// use tickring::{build_single_producer, Yielding};
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
) -> Builder<E, W, producer_kind::Single>
where
    E: Send + Sync + 'static,
    F: FnMut() -> E + 'static,
    W: WaitStrategy,
{
    Builder::new(size, Box::new(factory), wait)
}

/// Starts describing a pipeline that any number of threads publish into,
/// each through its own clone of the [`MultiProducer`] handle.
///
/// Any power-of-two size works, from 1 upward.
///
/// ```
/// use tickring::{build_multi_producer, Yielding};
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
) -> Builder<E, W, producer_kind::Multi>
where
    E: Send + Sync + 'static,
    F: FnMut() -> E + 'static,
    W: WaitStrategy,
{
    Builder::new(size, Box::new(factory), wait)
}

/// The thread body of one handler, made where its type is known so the
/// batch loop is monomorphized; boxed only to sit in the builder's list.
type HandlerBody<E, W> = Box<dyn FnOnce(ProcessorContext<E, W>, Started) -> HandlerReport + Send>;

/// How a handler's thread tells `build()` it is ready (pinned, created,
/// `on_start` done) or why not.
type Started = mpsc::Sender<Result<(), BuildError>>;

enum Role<E, W> {
    /// A handler or worker on a thread of its own.
    Thread(HandlerBody<E, W>),
    /// A poller, driven by the caller's thread.
    Poller,
}

struct ParticipantSpec<E, W> {
    name: Option<String>,
    core: Option<usize>,
    max_batch_size: usize,
    timeout: Option<Duration>,
    mutable: bool,
    role: Role<E, W>,
}

/// A pipeline being described; see [`build_single_producer`] and
/// [`build_multi_producer`].
pub struct Builder<E, W, K = producer_kind::Single> {
    size: usize,
    factory: Box<dyn FnMut() -> E>,
    wait: W,
    /// Stages in order; participants within a stage run in parallel.
    stages: Vec<Vec<ParticipantSpec<E, W>>>,
    /// The first misuse of the DSL, reported by `build()`.
    misuse: Option<BuildError>,
    panic_policy: PanicPolicy,
    full_ring_wait: FullRingWait,
    kind: PhantomData<K>,
}

/// What `build()` assembled, before it becomes a producer.
struct Assembled<E, W: WaitStrategy> {
    ring: Arc<RingBuffer<E>>,
    pipeline: Pipeline<W>,
    /// The last stage's sequences: the producer may not lap them.
    gating_sequences: Box<[Arc<Sequence>]>,
    pollers: Vec<EventPoller<E, W>>,
    full_ring_wait: FullRingWait,
}

impl<E, W> Builder<E, W, producer_kind::Single>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// Validates the pipeline, allocates and fills the ring, starts every
    /// handler's thread (pinned, named, `on_start` run) and returns the
    /// producer. Nothing is left running if the configuration is invalid.
    pub fn build(self) -> Result<Producer<E, W>, BuildError> {
        let parts = self.assemble()?;
        let sequencer = SingleProducerSequencer::new(parts.ring.capacity(), parts.gating_sequences);
        Ok(Producer::new(
            parts.ring,
            sequencer,
            parts.pipeline,
            parts.pollers,
            parts.full_ring_wait,
        ))
    }
}

impl<E, W> Builder<E, W, producer_kind::Multi>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    /// As the single-producer `build()`, returning the first handle of a
    /// multi-producer pipeline; clone it for each publishing thread.
    pub fn build(self) -> Result<MultiProducer<E, W>, BuildError> {
        let parts = self.assemble()?;
        let sequencer = MultiProducerSequencer::new(parts.ring.capacity(), parts.gating_sequences);
        Ok(MultiProducer::new(
            parts.ring,
            sequencer,
            parts.pipeline,
            parts.pollers,
            parts.full_ring_wait,
        ))
    }
}

impl<E, W, K> Builder<E, W, K>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    fn new(size: usize, factory: Box<dyn FnMut() -> E>, wait: W) -> Self {
        Self {
            size,
            factory,
            wait,
            stages: vec![Vec::new()],
            misuse: None,
            panic_policy: PanicPolicy::default(),
            full_ring_wait: FullRingWait::default(),
            kind: PhantomData,
        }
    }

    /// Adds a closure handler to the current stage: `|event, sequence,
    /// end_of_batch|`. Handlers in one stage see every event, in parallel.
    pub fn handle_events_with<F>(self, handler: F) -> Self
    where
        F: FnMut(&E, i64, bool) + Send + 'static,
    {
        self.handle_events_with_handler(handler)
    }

    /// Adds an [`EventHandler`] to the current stage.
    pub fn handle_events_with_handler<H>(self, handler: H) -> Self
    where
        H: EventHandler<E> + Send + 'static,
    {
        self.push_thread(false, move |context, started| {
            start_and_run(context, started, move || Reader(handler), run)
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
    pub fn handle_events_with_factory<H, M>(self, make: M) -> Self
    where
        H: EventHandler<E> + 'static,
        M: FnOnce() -> H + Send + 'static,
    {
        self.push_thread(false, move |context, started| {
            start_and_run(context, started, move || Reader(make()), run)
        })
    }

    /// Adds a closure that may modify events: `|event: &mut E, sequence,
    /// end_of_batch|`. It must be alone in its stage; the stages after it see
    /// what it wrote.
    pub fn handle_events_mut<F>(self, handler: F) -> Self
    where
        F: FnMut(&mut E, i64, bool) + Send + 'static,
    {
        self.handle_events_mut_handler(handler)
    }

    /// Adds a [`MutEventHandler`]; it must be alone in its stage.
    pub fn handle_events_mut_handler<H>(self, handler: H) -> Self
    where
        H: MutEventHandler<E> + Send + 'static,
    {
        self.push_thread(true, move |context, started| {
            start_and_run(context, started, move || Writer(handler), run)
        })
    }

    /// Adds a [`MutEventHandler`] created on its own thread by `make`.
    pub fn handle_events_mut_with_factory<H, M>(self, make: M) -> Self
    where
        H: MutEventHandler<E> + 'static,
        M: FnOnce() -> H + Send + 'static,
    {
        self.push_thread(true, move |context, started| {
            start_and_run(context, started, move || Writer(make()), run)
        })
    }

    /// Adds a worker pool to the current stage: each event goes to exactly
    /// one of the workers (whichever is free), each on its own thread. The
    /// next stage is gated on the whole pool. Per-handler options after this
    /// call configure the last worker.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use tickring::{build_single_producer, Yielding};
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
    ///     .handle_events_with_workers(workers)
    ///     .build()?;
    /// for order in 0..1_000 {
    ///     producer.publish(|event| *event = order)?;
    /// }
    /// producer.shutdown();
    /// assert_eq!(handled.load(Ordering::Relaxed), 1_000); // once each, not twice
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_events_with_workers<H, I>(mut self, workers: I) -> Self
    where
        H: EventHandler<E> + Send + 'static,
        I: IntoIterator<Item = H>,
    {
        let work: Arc<WorkClaim> = Arc::new(WorkClaim::new(AtomicI64::new(0)));
        let mut any = false;
        for worker in workers {
            any = true;
            let work = Arc::clone(&work);
            self = self.push_thread(false, move |context, started| {
                start_and_run(
                    context,
                    started,
                    move || Reader(worker),
                    |context, consumer| run_worker(context, &work, consumer),
                )
            });
        }
        if !any {
            let stage = self.stages.len() - 1;
            self.misuse
                .get_or_insert(BuildError::EmptyWorkerPool { stage });
        }
        self
    }

    /// Adds an [`EventPoller`] named `name` to the current stage: a
    /// participant with no thread, consumed by calling `poll` from the
    /// caller's own loop. Take it with the producer's `take_poller(name)`.
    pub fn add_poller(mut self, name: impl Into<String>) -> Self {
        let stage = self
            .stages
            .last_mut()
            .expect("there is always a current stage");
        stage.push(ParticipantSpec {
            name: Some(name.into()),
            core: None,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            timeout: None,
            mutable: false,
            role: Role::Poller,
        });
        self
    }

    /// Starts a new stage: the participants added next see an event only
    /// after every participant of the current stage has finished with it.
    pub fn and_then(mut self) -> Self {
        self.stages.push(Vec::new());
        self
    }

    /// Pins the last added handler's thread to core `id`
    /// ([`available_cores`](crate::available_cores) lists them).
    pub fn pin_at_core(self, id: usize) -> Self {
        self.configure_last("pin_at_core", |spec| spec.core = Some(id))
    }

    /// Names the last added handler's thread (default `tickring-<stage>-<n>`);
    /// the name also labels it in reports and lags.
    pub fn thread_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.configure_last("thread_name", |spec| spec.name = Some(name))
    }

    /// Caps how many events the last added handler (or poller) takes in one
    /// batch before releasing them (default [`DEFAULT_MAX_BATCH_SIZE`]).
    pub fn max_batch_size(self, events: usize) -> Self {
        self.configure_last("max_batch_size", |spec| spec.max_batch_size = events)
    }

    /// Calls the last added handler's `on_timeout` whenever it has waited
    /// `timeout` for an event; it then waits again.
    pub fn wait_timeout(self, timeout: Duration) -> Self {
        self.configure_last("wait_timeout", |spec| spec.timeout = Some(timeout))
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

    fn push_thread(
        mut self,
        mutable: bool,
        body: impl FnOnce(ProcessorContext<E, W>, Started) -> HandlerReport + Send + 'static,
    ) -> Self {
        let stage = self
            .stages
            .last_mut()
            .expect("there is always a current stage");
        stage.push(ParticipantSpec {
            name: None,
            core: None,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            timeout: None,
            mutable,
            role: Role::Thread(Box::new(body)),
        });
        self
    }

    fn configure_last(
        mut self,
        option: &'static str,
        set: impl FnOnce(&mut ParticipantSpec<E, W>),
    ) -> Self {
        match self.stages.last_mut().and_then(|stage| stage.last_mut()) {
            Some(spec) => set(spec),
            None => {
                self.misuse
                    .get_or_insert(BuildError::OptionWithoutHandler { option });
            }
        }
        self
    }

    fn validate(&mut self) -> Result<(), BuildError> {
        if let Some(error) = self.misuse.take() {
            return Err(error);
        }
        if self.stages.iter().all(Vec::is_empty) {
            return Err(BuildError::NoHandlers);
        }
        let mut names = std::collections::HashSet::new();
        let cores = available_cores();
        for (stage_index, stage) in self.stages.iter().enumerate() {
            if stage.is_empty() {
                return Err(BuildError::EmptyStage { stage: stage_index });
            }
            for (position, spec) in stage.iter().enumerate() {
                let name = participant_name(spec, stage_index, position);
                if spec.mutable && stage.len() > 1 {
                    return Err(BuildError::MutableHandlerWithSibling {
                        handler: name,
                        stage: stage_index,
                    });
                }
                if spec.max_batch_size == 0 {
                    return Err(BuildError::InvalidMaxBatchSize { handler: name });
                }
                if let Role::Poller = spec.role {
                    let option = match (spec.core, spec.timeout) {
                        (Some(_), _) => Some("pin_at_core"),
                        (_, Some(_)) => Some("wait_timeout"),
                        _ => None,
                    };
                    if let Some(option) = option {
                        return Err(BuildError::OptionNotForPoller {
                            option,
                            poller: name,
                        });
                    }
                }
                if let Some(core) = spec.core {
                    if !cores.contains(&core) {
                        return Err(BuildError::CoreNotFound {
                            handler: name,
                            core,
                            available: cores.clone(),
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

    /// Validates, fills the ring, starts every thread and waits until each
    /// has started; on any failure stops what started and returns the error.
    fn assemble(mut self) -> Result<Assembled<E, W>, BuildError> {
        self.validate()?;
        let ring = Arc::new(RingBuffer::new(self.size, &mut *self.factory)?);
        let state = Arc::new(PipelineState::new());
        let wait = Arc::new(self.wait);
        let (started, readiness) = mpsc::channel();
        let mut pipeline = Pipeline::new(Arc::clone(&state), Arc::clone(&wait));
        let mut pollers = Vec::new();
        let mut upstream: Vec<Arc<Sequence>> = Vec::new();
        let mut failure = None;
        let last_stage = self.stages.len() - 1;
        'stages: for (stage_index, stage) in self.stages.into_iter().enumerate() {
            let mut stage_sequences = Vec::with_capacity(stage.len());
            for (position, spec) in stage.into_iter().enumerate() {
                let name = participant_name(&spec, stage_index, position);
                let sequence = Arc::new(Sequence::new());
                stage_sequences.push(Arc::clone(&sequence));
                pipeline.participants.push(Participant {
                    name: name.clone(),
                    sequence: Arc::clone(&sequence),
                });
                let dependencies: Box<[Arc<Sequence>]> = upstream.clone().into_boxed_slice();
                let body = match spec.role {
                    Role::Poller => {
                        pollers.push(EventPoller::new(
                            name,
                            Arc::clone(&ring),
                            Arc::clone(&wait),
                            Arc::clone(&state),
                            dependencies,
                            sequence,
                            spec.max_batch_size as i64,
                        ));
                        continue;
                    }
                    Role::Thread(body) => body,
                };
                let context = ProcessorContext {
                    name: name.clone(),
                    ring: Arc::clone(&ring),
                    wait: Arc::clone(&wait),
                    state: Arc::clone(&state),
                    barrier: SequenceBarrier::new(
                        Arc::clone(&ring),
                        Arc::clone(&wait),
                        Arc::clone(&state),
                        dependencies,
                    ),
                    sequence,
                    max_batch_size: spec.max_batch_size as i64,
                    timeout: spec.timeout,
                    panic_policy: self.panic_policy,
                    has_dependents: stage_index != last_stage,
                };
                match spawn_participant(name.clone(), spec.core, context, body, started.clone()) {
                    Ok(join) => pipeline.add_thread(name, join),
                    Err(error) => {
                        failure = Some(error);
                        break 'stages;
                    }
                }
            }
            upstream = stage_sequences;
        }
        drop(started);
        for _ in 0..pipeline.thread_count() {
            match readiness.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                // Every sender is gone: a thread ended without reporting.
                Err(_) => break,
            }
        }
        if let Some(error) = failure {
            // Pollers built so far would halt on drop anyway; say so first.
            ring.mark_halted();
            pipeline.halt();
            drop(pollers);
            return Err(error);
        }
        Ok(Assembled {
            ring,
            pipeline,
            gating_sequences: upstream.into_boxed_slice(),
            pollers,
            full_ring_wait: self.full_ring_wait,
        })
    }
}

fn participant_name<E, W>(spec: &ParticipantSpec<E, W>, stage: usize, position: usize) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| format!("tickring-{stage}-{position}"))
}

/// Starts one participant's thread: pin it, then run its body.
fn spawn_participant<E, W>(
    name: String,
    core: Option<usize>,
    context: ProcessorContext<E, W>,
    body: HandlerBody<E, W>,
    started: Started,
) -> Result<thread::JoinHandle<HandlerReport>, BuildError>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    let thread_name = name.clone();
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Some(core) = core {
                if !pin_current_thread(core) {
                    let _ = started.send(Err(BuildError::PinFailed {
                        handler: thread_name.clone(),
                        core,
                    }));
                    return HandlerReport::new(thread_name);
                }
            }
            body(context, started)
        })
        .map_err(|error| BuildError::ThreadSpawn {
            handler: name,
            message: error.to_string(),
        })
}

/// On the handler's thread: create the handler, run `on_start`, report
/// readiness to `build()`, then run its loop.
fn start_and_run<E, W, C, M, R>(
    context: ProcessorContext<E, W>,
    started: Started,
    make: M,
    run_loop: R,
) -> HandlerReport
where
    W: WaitStrategy,
    C: Consume<E>,
    M: FnOnce() -> C,
    R: FnOnce(ProcessorContext<E, W>, &mut C) -> HandlerReport,
{
    let created = guarded(|| {
        let mut consumer = make();
        consumer.on_start();
        consumer
    });
    let mut consumer = match created {
        Ok(consumer) => consumer,
        Err(message) => {
            let _ = started.send(Err(BuildError::HandlerStartPanicked {
                handler: context.name.clone(),
                message,
            }));
            return HandlerReport::new(context.name);
        }
    };
    let _ = started.send(Ok(()));
    drop(started);
    run_loop(context, &mut consumer)
}

impl<E, W, K> std::fmt::Debug for Builder<E, W, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("size", &self.size)
            .field(
                "participants_per_stage",
                &self.stages.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("panic_policy", &self.panic_policy)
            .field("full_ring_wait", &self.full_ring_wait)
            .finish_non_exhaustive()
    }
}

/// End-to-end pipelines inside the crate, so `cargo miri test` checks every
/// `unsafe` slot access on the real publish and consume paths.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::{build_multi_producer, build_single_producer, PollState, Yielding};

    const EVENTS: i64 = if cfg!(miri) { 60 } else { 20_000 };

    #[derive(Debug, Default)]
    struct Event {
        value: i64,
        doubled: i64,
    }

    #[test]
    fn diamond_with_a_mutable_stage_across_wrap_around() {
        let total = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&total);
        let mut producer = build_single_producer(4, Event::default, Yielding::new())
            .handle_events_mut(|event: &mut Event, _, _| event.doubled = event.value * 2)
            .and_then()
            .handle_events_with(|event: &Event, sequence, _| {
                assert_eq!((event.value, event.doubled), (sequence, sequence * 2));
            })
            .handle_events_with(|event: &Event, _, _| assert_eq!(event.doubled % 2, 0))
            .and_then()
            .handle_events_with(move |event: &Event, _, _| {
                counted.fetch_add(event.doubled as u64, Ordering::Relaxed);
            })
            .build()
            .expect("valid pipeline");
        for value in 0..EVENTS {
            if value % 2 == 0 {
                producer.publish(|event| event.value = value).unwrap();
            } else {
                producer
                    .batch_publish(1, |event, _| event.value = value)
                    .unwrap();
            }
        }
        let report = producer.shutdown();
        assert!(report.first_panic().is_none(), "{report:?}");
        assert!(report
            .handlers
            .iter()
            .all(|h| h.events_handled == EVENTS as u64));
        assert_eq!(
            total.load(Ordering::Relaxed),
            (EVENTS * (EVENTS - 1)) as u64
        );
    }

    #[test]
    fn two_producers_a_worker_pool_and_a_poller() {
        let producer = build_multi_producer(2, Event::default, Yielding::new())
            .handle_events_with_workers((0..2).map(|_| {
                |event: &Event, _: i64, _: bool| {
                    assert!(event.value >= 0);
                }
            }))
            .and_then()
            .add_poller("tail")
            .build()
            .expect("valid pipeline");
        let mut poller = producer.take_poller("tail").expect("added");
        let feeds: Vec<_> = (0..2)
            .map(|_| {
                let mut producer = producer.clone();
                std::thread::spawn(move || {
                    for value in 0..EVENTS / 2 {
                        producer.publish(|event| event.value = value).unwrap();
                    }
                })
            })
            .collect();
        drop(producer);
        let mut seen = 0;
        let mut next_sequence = 0;
        loop {
            match poller.poll(|_, sequence, _| {
                assert_eq!(sequence, next_sequence);
                next_sequence += 1;
                seen += 1;
                true
            }) {
                PollState::ShutDown => break,
                PollState::Halted => panic!("halted"),
                _ => std::thread::yield_now(),
            }
        }
        for feed in feeds {
            feed.join().unwrap();
        }
        assert_eq!(seen, EVENTS);
    }
}
