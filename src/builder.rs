//! The DSL that describes a pipeline: stages of handlers, each stage gated on
//! the one before, per-handler threads, pinning and batch limits. `build()`
//! validates everything into a [`BuildError`] before a thread starts.
//!
//! ```text
//! build_single_producer(size, factory, wait)
//!     .handle_events_mut(decode)        // stage 0: alone, may write events
//!     .and_then()
//!     .handle_events_with(book)         // stage 1: these two run in parallel
//!     .handle_events_with(risk)
//!     .and_then()
//!     .handle_events_with(strategy)     // stage 2: after both of stage 1
//!     .build()?
//! ```

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::affinity::{available_cores, pin_current_thread};
use crate::barrier::SequenceBarrier;
use crate::error::BuildError;
use crate::handler::{EventHandler, MutEventHandler};
use crate::pipeline::{HandlerThread, Pipeline, PipelineState};
use crate::processor::{guarded, run, Consume, ProcessorContext, Reader, Writer};
use crate::producer::Producer;
use crate::report::{HandlerReport, PanicPolicy};
use crate::ring_buffer::RingBuffer;
use crate::sequence::Sequence;
use crate::sequencer::single::SingleProducerSequencer;
use crate::wait::WaitStrategy;

/// The default `max_batch_size`: a handler releases the slots it finished at
/// least this often, however far behind it is.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 1024;

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
/// # Ok::<(), tickring::BuildError>(())
/// ```
pub fn build_single_producer<E, F, W>(size: usize, factory: F, wait: W) -> Builder<E, W>
where
    E: Send + Sync + 'static,
    F: FnMut() -> E + 'static,
    W: WaitStrategy,
{
    Builder {
        size,
        factory: Box::new(factory),
        wait,
        stages: vec![Vec::new()],
        misuse: None,
        panic_policy: PanicPolicy::default(),
    }
}

/// The thread body of one handler, made where its type is known so the
/// batch loop is monomorphized; boxed only to sit in the builder's list.
type HandlerBody<E, W> = Box<dyn FnOnce(ProcessorContext<E, W>, Started) -> HandlerReport + Send>;

/// How a handler's thread tells `build()` it is ready (pinned, created,
/// `on_start` done) or why not.
type Started = mpsc::Sender<Result<(), BuildError>>;

struct HandlerSpec<E, W> {
    name: Option<String>,
    core: Option<usize>,
    max_batch_size: usize,
    timeout: Option<Duration>,
    mutable: bool,
    body: HandlerBody<E, W>,
}

/// A pipeline being described; see [`build_single_producer`].
pub struct Builder<E, W> {
    size: usize,
    factory: Box<dyn FnMut() -> E>,
    wait: W,
    /// Stages in order; handlers within a stage run in parallel.
    stages: Vec<Vec<HandlerSpec<E, W>>>,
    /// The first misuse of the DSL, reported by `build()`.
    misuse: Option<BuildError>,
    panic_policy: PanicPolicy,
}

impl<E, W> Builder<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
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
        self.push(false, move |context, started| {
            start_and_run(context, started, move || Reader(handler))
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
        self.push(false, move |context, started| {
            start_and_run(context, started, move || Reader(make()))
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
        self.push(true, move |context, started| {
            start_and_run(context, started, move || Writer(handler))
        })
    }

    /// Adds a [`MutEventHandler`] created on its own thread by `make`.
    pub fn handle_events_mut_with_factory<H, M>(self, make: M) -> Self
    where
        H: MutEventHandler<E> + 'static,
        M: FnOnce() -> H + Send + 'static,
    {
        self.push(true, move |context, started| {
            start_and_run(context, started, move || Writer(make()))
        })
    }

    /// Starts a new stage: the handlers added next see an event only after
    /// every handler of the current stage has finished with it.
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

    /// Caps how many events the last added handler takes in one batch before
    /// releasing them (default [`DEFAULT_MAX_BATCH_SIZE`]).
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

    /// Validates the pipeline, allocates and fills the ring, starts every
    /// handler's thread (pinned, named, `on_start` run) and returns the
    /// producer. Nothing is started if the configuration is invalid.
    pub fn build(mut self) -> Result<Producer<E, W>, BuildError> {
        self.validate()?;
        let ring = Arc::new(RingBuffer::new(self.size, &mut *self.factory)?);
        let state = Arc::new(PipelineState::new());
        let wait = Arc::new(self.wait);
        let (started, readiness) = mpsc::channel();
        let mut pipeline = Pipeline {
            state: Arc::clone(&state),
            wait: Arc::clone(&wait),
            handlers: Vec::new(),
        };
        let mut upstream: Vec<Arc<Sequence>> = Vec::new();
        let mut spawn_error = None;
        for (stage_index, stage) in self.stages.into_iter().enumerate() {
            let mut stage_sequences = Vec::with_capacity(stage.len());
            for (position, spec) in stage.into_iter().enumerate() {
                let name = spec
                    .name
                    .unwrap_or_else(|| format!("tickring-{stage_index}-{position}"));
                let sequence = Arc::new(Sequence::new());
                let context = ProcessorContext {
                    name: name.clone(),
                    ring: Arc::clone(&ring),
                    wait: Arc::clone(&wait),
                    state: Arc::clone(&state),
                    barrier: SequenceBarrier::new(
                        Arc::clone(&ring),
                        Arc::clone(&wait),
                        Arc::clone(&state),
                        upstream.clone().into_boxed_slice(),
                    ),
                    sequence: Arc::clone(&sequence),
                    max_batch_size: spec.max_batch_size as i64,
                    timeout: spec.timeout,
                    panic_policy: self.panic_policy,
                };
                let core = spec.core;
                let body = spec.body;
                let started = started.clone();
                let thread_name = name.clone();
                let spawned = std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || {
                        if let Some(core) = core {
                            if !pin_current_thread(core) {
                                let _ = started.send(Err(BuildError::PinFailed {
                                    handler: thread_name.clone(),
                                    core,
                                }));
                                return HandlerReport {
                                    name: thread_name,
                                    events_handled: 0,
                                    events_skipped: 0,
                                    panic: None,
                                };
                            }
                        }
                        body(context, started)
                    });
                match spawned {
                    Ok(join) => pipeline.handlers.push(HandlerThread {
                        name,
                        sequence: Arc::clone(&sequence),
                        join: Some(join),
                    }),
                    Err(error) => {
                        spawn_error = Some(BuildError::ThreadSpawn {
                            handler: name,
                            message: error.to_string(),
                        });
                        break;
                    }
                }
                stage_sequences.push(sequence);
            }
            if spawn_error.is_some() {
                break;
            }
            upstream = stage_sequences;
        }
        drop(started);
        let mut failure = spawn_error;
        for _ in 0..pipeline.handlers.len() {
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
            pipeline.halt();
            return Err(error);
        }
        let sequencer = SingleProducerSequencer::new(ring.capacity(), upstream.into_boxed_slice());
        Ok(Producer::new(ring, sequencer, pipeline))
    }

    fn push(
        mut self,
        mutable: bool,
        body: impl FnOnce(ProcessorContext<E, W>, Started) -> HandlerReport + Send + 'static,
    ) -> Self {
        let stage = self
            .stages
            .last_mut()
            .expect("there is always a current stage");
        stage.push(HandlerSpec {
            name: None,
            core: None,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            timeout: None,
            mutable,
            body: Box::new(body),
        });
        self
    }

    fn configure_last(
        mut self,
        option: &'static str,
        set: impl FnOnce(&mut HandlerSpec<E, W>),
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
                let name = spec
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("tickring-{stage_index}-{position}"));
                if spec.mutable && stage.len() > 1 {
                    return Err(BuildError::MutableHandlerWithSibling {
                        handler: name,
                        stage: stage_index,
                    });
                }
                if spec.max_batch_size == 0 {
                    return Err(BuildError::InvalidMaxBatchSize { handler: name });
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
                if !names.insert(name.clone()) {
                    return Err(BuildError::DuplicateThreadName { name });
                }
            }
        }
        Ok(())
    }
}

/// On the handler's thread: create the handler, run `on_start`, report
/// readiness to `build()`, then run the batch loop.
fn start_and_run<E, W, C, M>(
    context: ProcessorContext<E, W>,
    started: Started,
    make: M,
) -> HandlerReport
where
    W: WaitStrategy,
    C: Consume<E>,
    M: FnOnce() -> C,
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
            return HandlerReport {
                name: context.name,
                events_handled: 0,
                events_skipped: 0,
                panic: None,
            };
        }
    };
    let _ = started.send(Ok(()));
    drop(started);
    run(context, &mut consumer)
}

impl<E, W> std::fmt::Debug for Builder<E, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("size", &self.size)
            .field(
                "handlers_per_stage",
                &self.stages.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("panic_policy", &self.panic_policy)
            .finish_non_exhaustive()
    }
}
