//! The consumer loop: how a handler thread, a worker of a pool and a poller
//! take events from the ring, and the panic policy.
//!
//! One batch loop (`Slots::each`, in `ring_buffer.rs`) serves all three: it
//! hands each event of a [`Readable`] range to the consumer in order, stops
//! before the next event once the pipeline has halted, and records how far
//! it got even when the consumer panics. Around it, a handler thread waits
//! for the whole backlog (bounded by `max_batch_size`) and releases it with
//! one store; a worker claims one sequence at a time from its pool; a poller
//! does not wait.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::barrier::{Batch, SequenceBarrier, WaitOutcome};
use crate::error::BuildError;
use crate::handler::{EventHandler, MutEventHandler};
use crate::loom::sync::atomic::{AtomicI64, Ordering};
use crate::loom::sync::mpsc;
use crate::report::{drop_payload, panic_message, HandlerPanic, HandlerReport, PanicPolicy};
use crate::ring_buffer::{Entry, Readable, RingBuffer, SoleWriter};
use crate::sequence::Sequence;
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// How a handler reaches the slot: `&E` or `&mut E`. Two small adapters keep
/// one batch loop for both kinds of handler.
pub(crate) trait Consume<E> {
    fn consume(&mut self, entry: Entry<'_, E>, sequence: i64, end_of_batch: bool);
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64);
    fn on_start(&mut self);
    fn on_shutdown(&mut self);
    fn on_timeout(&mut self, sequence: i64);
}

/// A handler that reads events.
pub(crate) struct Reader<H>(pub(crate) H);

impl<E, H: EventHandler<E>> Consume<E> for Reader<H> {
    #[inline]
    fn consume(&mut self, entry: Entry<'_, E>, sequence: i64, end: bool) {
        self.0.on_event(entry.event(), sequence, end);
    }
    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.0.on_batch_start(batch_size, queue_depth);
    }
    fn on_start(&mut self) {
        self.0.on_start();
    }
    fn on_shutdown(&mut self) {
        self.0.on_shutdown();
    }
    fn on_timeout(&mut self, sequence: i64) {
        self.0.on_timeout(sequence);
    }
}

/// A handler that writes events; `build()` proved it alone in its stage.
pub(crate) struct Writer<H> {
    pub(crate) handler: H,
    pub(crate) sole: SoleWriter,
}

impl<E, H: MutEventHandler<E>> Consume<E> for Writer<H> {
    #[inline]
    fn consume(&mut self, mut entry: Entry<'_, E>, sequence: i64, end: bool) {
        self.handler
            .on_event(entry.event_mut(&self.sole), sequence, end);
    }
    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        self.handler.on_batch_start(batch_size, queue_depth);
    }
    fn on_start(&mut self) {
        self.handler.on_start();
    }
    fn on_shutdown(&mut self) {
        self.handler.on_shutdown();
    }
    fn on_timeout(&mut self, sequence: i64) {
        self.handler.on_timeout(sequence);
    }
}

/// Everything a handler's thread needs, made by `build()`.
pub(crate) struct ProcessorContext<E, W> {
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared<E, W>>,
    pub(crate) barrier: SequenceBarrier,
    pub(crate) sequence: Arc<Sequence>,
    /// At least 1, at most the ring's capacity (clamped by `build()`).
    pub(crate) max_batch_size: i64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) panic_policy: PanicPolicy,
    /// A later stage waits on this handler's sequence. A leaf's progress
    /// wakes nobody (the producer waits for room without the wait strategy),
    /// so a leaf skips the signal: with `Blocking`, a lock while anyone sleeps.
    pub(crate) has_dependents: bool,
    /// `Some` for a mutable handler that `build()` found alone in its stage.
    pub(crate) sole_writer: Option<SoleWriter>,
    /// Another thread of the pipeline (the only things that halt one once
    /// it runs) exists: check the halt before every event (see `run_batch`).
    pub(crate) others_may_halt: bool,
}

/// Runs `f`, turning a panic into its message (a payload whose own `Drop`
/// panics is leaked, not re-raised).
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = panic_message(payload.as_ref());
        drop_payload(payload);
        message
    })
}

/// Hands each event of `readable` to `each(entry, sequence, end_of_batch)`
/// in order, until `each` returns `false` or the pipeline halts (after a
/// halt no participant starts another event). `stopped_at` ends as the
/// first sequence not completed — also when `each` panics, which leaves it
/// at the sequence that panicked.
///
/// `others_may_halt`: another thread of the pipeline could halt it while
/// this batch runs, so the halt is checked before every event. Without one
/// (a pipeline with a single handler thread), it is checked before the
/// batch only: nothing else can set it meanwhile, and the loop then keeps
/// the handler's state in registers (an atomic load between two events
/// makes the compiler reload and store it around every event).
#[inline]
pub(crate) fn run_batch<E>(
    ring: &RingBuffer<E>,
    readable: &mut Readable,
    stopped_at: &mut i64,
    others_may_halt: bool,
    each: impl FnMut(Entry<'_, E>, i64, bool) -> bool,
) -> bool {
    let (slots, last) = (ring.slots(), readable.last());
    if others_may_halt {
        slots.each::<true>(readable, last, true, &ring.state, stopped_at, each)
    } else {
        slots.each::<false>(readable, last, true, &ring.state, stopped_at, each)
    }
}

/// How one batch ended, for the loops' bookkeeping.
enum BatchEnd {
    /// Every event handled (or skipped under `LogAndSkip`); go on from here.
    Continue(i64),
    /// Stop the loop: the pipeline halted.
    Stop,
}

/// Runs one batch through `consumer` under the panic policy: counts what was
/// handled and skipped, releases what is done, and says whether to go on.
fn consume_batch<E, W: WaitStrategy, C: Consume<E>>(
    context: &ProcessorContext<E, W>,
    consumer: &mut C,
    report: &mut HandlerReport,
    batch: Batch,
) -> BatchEnd {
    let ring = &context.shared.ring;
    let Batch {
        readable,
        available,
    } = batch;
    let (next, end) = (readable.first(), readable.last());
    if let Err(message) = guarded(|| consumer.on_batch_start(end - next + 1, available - next + 1))
    {
        if record_panic(context, report, None, message) {
            return BatchEnd::Stop;
        }
    }
    let mut stopped_at = next;
    let outcome = guarded(|| {
        // Moved in: the range ends with this closure, before any release.
        let mut readable = readable;
        run_batch(
            ring,
            &mut readable,
            &mut stopped_at,
            context.others_may_halt,
            |entry, sequence, end_of_batch| {
                consumer.consume(entry, sequence, end_of_batch);
                true
            },
        );
    });
    report.events_handled += (stopped_at - next) as u64;
    match outcome {
        Ok(()) if stopped_at > end => BatchEnd::Continue(stopped_at),
        Ok(()) => {
            // Halted mid-batch: release what was handled, start nothing more.
            context.sequence.set(stopped_at - 1);
            BatchEnd::Stop
        }
        Err(message) => {
            if record_panic(context, report, Some(stopped_at), message) {
                // The events before the failed one are done; release them.
                context.sequence.set(stopped_at - 1);
                return BatchEnd::Stop;
            }
            report.events_skipped += 1;
            BatchEnd::Continue(stopped_at + 1)
        }
    }
}

/// The handler's thread body after `on_start`: the batch loop, then
/// `on_shutdown`. Returns what happened.
pub(crate) fn run<E, W: WaitStrategy, C: Consume<E>>(
    mut context: ProcessorContext<E, W>,
    consumer: &mut C,
) -> HandlerReport {
    let mut report = HandlerReport::new(context.name.clone());
    let shared = Arc::clone(&context.shared);
    let mut next = context.sequence.get() + 1;
    loop {
        let limit = next + context.max_batch_size - 1;
        let batch = match next_batch(&mut context, consumer, &mut report, next, limit) {
            Next::Batch(batch) => batch,
            Next::Again => continue,
            Next::Stop => break,
        };
        match consume_batch(&context, consumer, &mut report, batch) {
            BatchEnd::Continue(after) => next = after,
            BatchEnd::Stop => break,
        }
        // Release (in `set`): this handler is done with every slot up to `next - 1`.
        context.sequence.set(next - 1);
        if context.has_dependents {
            shared.wait.signal_all_when_blocking();
        }
    }
    finish(&context, consumer, report)
}

/// The claim counter a worker pool shares: the next sequence no worker has
/// taken yet.
pub(crate) type WorkClaim = crossbeam_utils::CachePadded<AtomicI64>;

/// A worker of a pool: each event goes to exactly one worker of the pool.
///
/// The scheme of LMAX's `WorkProcessor`: before claiming sequence `c` from
/// the shared counter, a worker sets its own sequence to `c - 1`. So every
/// worker's sequence is below any event it may still hold, and the minimum
/// over the pool (what the next stage and the producer gate on) never passes
/// an event that a worker has not finished.
pub(crate) fn run_worker<E, W: WaitStrategy, C: Consume<E>>(
    mut context: ProcessorContext<E, W>,
    work: &WorkClaim,
    consumer: &mut C,
) -> HandlerReport {
    let mut report = HandlerReport::new(context.name.clone());
    let shared = Arc::clone(&context.shared);
    let mut claimed: Option<i64> = None;
    loop {
        let next = match claimed {
            Some(next) => next,
            None => {
                // Relaxed load and CAS: the claim only has to be unique; the
                // slot is ordered by the barrier, the release below by `set`.
                let mut candidate = work.load(Ordering::Relaxed);
                loop {
                    // Release (in `set`): everything this worker handled is done.
                    context.sequence.set(candidate - 1);
                    match work.compare_exchange_weak(
                        candidate,
                        candidate + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(current) => candidate = current,
                    }
                }
                if context.has_dependents {
                    shared.wait.signal_all_when_blocking();
                }
                claimed = Some(candidate);
                candidate
            }
        };
        let batch = match next_batch(&mut context, consumer, &mut report, next, next) {
            Next::Batch(batch) => batch,
            Next::Again => continue,
            Next::Stop => break,
        };
        claimed = None;
        if let BatchEnd::Stop = consume_batch(&context, consumer, &mut report, batch) {
            break;
        }
    }
    finish(&context, consumer, report)
}

/// What a participant's wait for its next events gave.
enum Next {
    Batch(Batch),
    /// The wait timed out and `on_timeout` ran: wait again.
    Again,
    /// Drained, halted, or `on_timeout` panicked under `Halt`.
    Stop,
}

/// Waits for the events from `next` (at most to `limit`); on a timeout runs
/// `on_timeout` under the panic policy.
#[inline]
fn next_batch<E, W: WaitStrategy, C: Consume<E>>(
    context: &mut ProcessorContext<E, W>,
    consumer: &mut C,
    report: &mut HandlerReport,
    next: i64,
    limit: i64,
) -> Next {
    let waited = context
        .barrier
        .wait_for(&context.shared, next, limit, context.timeout);
    match waited {
        Ok(batch) => Next::Batch(batch),
        Err(WaitOutcome::TimedOut) => match guarded(|| consumer.on_timeout(next - 1)) {
            Ok(()) => Next::Again,
            Err(message) => {
                if record_panic(context, report, None, message) {
                    Next::Stop
                } else {
                    Next::Again
                }
            }
        },
        Err(WaitOutcome::Drained | WaitOutcome::Halted) => Next::Stop,
    }
}

/// Runs `on_shutdown` and completes the report.
fn finish<E, W, C: Consume<E>>(
    context: &ProcessorContext<E, W>,
    consumer: &mut C,
    mut report: HandlerReport,
) -> HandlerReport {
    if let Err(message) = guarded(|| consumer.on_shutdown()) {
        report.panic.get_or_insert(HandlerPanic {
            handler: context.name.clone(),
            sequence: None,
            message,
        });
    }
    report
}

/// Records a panic under the pipeline's policy; returns whether the handler
/// must stop (and has halted the pipeline).
fn record_panic<E, W: WaitStrategy>(
    context: &ProcessorContext<E, W>,
    report: &mut HandlerReport,
    sequence: Option<i64>,
    message: String,
) -> bool {
    let panic = HandlerPanic {
        handler: context.name.clone(),
        sequence,
        message,
    };
    match context.panic_policy {
        PanicPolicy::Halt => {
            report.panic = Some(panic);
            context.shared.halt();
            true
        }
        PanicPolicy::LogAndSkip => {
            eprintln!("tickring: {panic}; skipping it (PanicPolicy::LogAndSkip)");
            report.panic.get_or_insert(panic);
            false
        }
    }
}

/// How a handler's thread tells `build()` it is ready (pinned, created,
/// `on_start` done) or why not. If the thread ends before it said either,
/// the drop says it failed, so `build()` never waits for a dead thread.
pub(crate) struct Readiness {
    name: String,
    sender: Option<mpsc::Sender<Result<(), BuildError>>>,
}

impl Readiness {
    pub(crate) fn new(name: String, sender: mpsc::Sender<Result<(), BuildError>>) -> Self {
        Self {
            name,
            sender: Some(sender),
        }
    }

    fn send(&mut self, outcome: Result<(), BuildError>) {
        if let Some(sender) = self.sender.take() {
            // The builder may be gone (it failed elsewhere); nothing to tell.
            let _ = sender.send(outcome);
        }
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        let handler = self.name.clone();
        self.send(Err(BuildError::HandlerStartPanicked {
            handler,
            message: "the handler's thread ended before it started".into(),
        }));
    }
}

/// A handler thread's whole body: pin, create the handler, `on_start`, say
/// ready, run the loop. Whatever unwinds out of it — tickring's own code
/// included, and a panic payload that panics when dropped — halts the
/// pipeline and is reported, so a producer gets `Halted`, never a hang.
pub(crate) fn thread_main<E, W, C, M, R>(
    context: ProcessorContext<E, W>,
    mut readiness: Readiness,
    core: Option<usize>,
    make: M,
    run_loop: R,
) -> HandlerReport
where
    W: WaitStrategy,
    C: Consume<E>,
    M: FnOnce(&mut ProcessorContext<E, W>) -> C,
    R: FnOnce(ProcessorContext<E, W>, &mut C) -> HandlerReport,
{
    let name = context.name.clone();
    let shared = Arc::clone(&context.shared);
    let body = AssertUnwindSafe(|| {
        let mut context = context;
        if let Some(core) = core {
            if crate::affinity::pin_current_thread(core).is_err() {
                readiness.send(Err(BuildError::PinFailed {
                    handler: context.name.clone(),
                    core,
                }));
                return HandlerReport::new(context.name);
            }
        }
        let created = guarded(|| {
            let mut consumer = make(&mut context);
            consumer.on_start();
            consumer
        });
        let mut consumer = match created {
            Ok(consumer) => consumer,
            Err(message) => {
                readiness.send(Err(BuildError::HandlerStartPanicked {
                    handler: context.name.clone(),
                    message,
                }));
                return HandlerReport::new(context.name);
            }
        };
        readiness.send(Ok(()));
        run_loop(context, &mut consumer)
    });
    match catch_unwind(body) {
        Ok(report) => report,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            drop_payload(payload);
            shared.halt();
            let mut report = HandlerReport::new(name.clone());
            report.panic = Some(HandlerPanic {
                handler: name,
                sequence: None,
                message: format!("tickring's thread failed outside the handler: {message}"),
            });
            report
        }
    }
}
