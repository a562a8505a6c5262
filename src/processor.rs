//! The batch loop that runs one handler on its thread, and the panic policy.
//!
//! Per batch: one barrier wait (which returns everything available), one
//! `on_batch_start`, `on_event` for each event, one release store of the
//! handler's sequence. A bounded batch (`max_batch_size`) keeps a slow
//! handler from holding back the stages behind it for a whole ring.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::barrier::{SequenceBarrier, WaitOutcome};
use crate::handler::{EventHandler, MutEventHandler};
use crate::pipeline::PipelineState;
use crate::report::{panic_message, HandlerPanic, HandlerReport, PanicPolicy};
use crate::ring_buffer::RingBuffer;
use crate::sequence::Sequence;
use crate::wait::WaitStrategy;

/// How a handler reaches the slot: `&E` or `&mut E`. Two small adapters keep
/// one batch loop for both kinds of handler.
pub(crate) trait Consume<E> {
    fn consume(&mut self, ring: &RingBuffer<E>, sequence: i64, end_of_batch: bool);
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64);
    fn on_start(&mut self);
    fn on_shutdown(&mut self);
    fn on_timeout(&mut self, sequence: i64);
}

/// A handler that reads events.
pub(crate) struct Reader<H>(pub(crate) H);

impl<E, H: EventHandler<E>> Consume<E> for Reader<H> {
    #[inline]
    fn consume(&mut self, ring: &RingBuffer<E>, sequence: i64, end_of_batch: bool) {
        // SAFETY: invariant 2 — the batch loop calls this only for sequences its
        // barrier returned as available and before it stores its own sequence
        // past them.
        unsafe {
            ring.read_published(sequence, |event| {
                self.0.on_event(event, sequence, end_of_batch)
            })
        };
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

/// A handler that writes events; the builder keeps it alone in its stage.
pub(crate) struct Writer<H>(pub(crate) H);

impl<E, H: MutEventHandler<E>> Consume<E> for Writer<H> {
    #[inline]
    fn consume(&mut self, ring: &RingBuffer<E>, sequence: i64, end_of_batch: bool) {
        // SAFETY: invariants 2 and 3 — as for `Reader`, and `build()` accepted
        // this handler only alone in its stage, so every other handler is
        // upstream (done with the slot) or downstream (gated on this handler).
        unsafe {
            ring.modify_published(sequence, |event| {
                self.0.on_event(event, sequence, end_of_batch)
            })
        };
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

/// Everything a handler's thread needs, made by `build()`.
pub(crate) struct ProcessorContext<E, W> {
    pub(crate) name: String,
    pub(crate) ring: Arc<RingBuffer<E>>,
    pub(crate) wait: Arc<W>,
    pub(crate) state: Arc<PipelineState>,
    pub(crate) barrier: SequenceBarrier<E, W>,
    pub(crate) sequence: Arc<Sequence>,
    pub(crate) max_batch_size: i64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) panic_policy: PanicPolicy,
    /// A later stage waits on this handler's sequence. A leaf's progress
    /// wakes nobody (the producer waits for room without the wait strategy),
    /// so a leaf skips the signal: with `Blocking`, a lock while anyone sleeps.
    pub(crate) has_dependents: bool,
}

/// Runs `f`, turning a panic into its message.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The handler's thread body after `on_start`: the batch loop, then
/// `on_shutdown`. Returns what happened.
pub(crate) fn run<E, W: WaitStrategy, C: Consume<E>>(
    mut context: ProcessorContext<E, W>,
    consumer: &mut C,
) -> HandlerReport {
    let mut report = HandlerReport {
        name: context.name.clone(),
        events_handled: 0,
        events_skipped: 0,
        panic: None,
    };
    let ring = &*context.ring;
    let mut next = context.sequence.get() + 1;
    loop {
        let limit = next + context.max_batch_size - 1;
        let available = match context.barrier.wait_for(next, limit, context.timeout) {
            Ok(available) => available,
            Err(WaitOutcome::TimedOut) => {
                if let Err(message) = guarded(|| consumer.on_timeout(next - 1)) {
                    if record_panic(&context, &mut report, None, message) {
                        break;
                    }
                }
                continue;
            }
            Err(WaitOutcome::Drained) | Err(WaitOutcome::Halted) => break,
        };
        let end = available.min(limit);
        if let Err(message) =
            guarded(|| consumer.on_batch_start(end - next + 1, available - next + 1))
        {
            if record_panic(&context, &mut report, None, message) {
                break;
            }
        }
        // Where a panicking handler stopped: written by `Progress`'s drop
        // while unwinding, so the loop's counter can live in a register.
        let mut current = next;
        let batch = guarded(|| {
            let mut progress = Progress {
                at: next,
                out: &mut current,
            };
            while progress.at <= end {
                consumer.consume(ring, progress.at, progress.at == end);
                progress.at += 1;
            }
        });
        match batch {
            Ok(()) => {
                report.events_handled += (end - next + 1) as u64;
                next = end + 1;
            }
            Err(message) => {
                report.events_handled += (current - next) as u64;
                if record_panic(&context, &mut report, Some(current), message) {
                    // The events before the failed one are done; release them.
                    context.sequence.set(current - 1);
                    break;
                }
                report.events_skipped += 1;
                next = current + 1;
            }
        }
        // Release (in `set`): this handler is done with every slot up to `next - 1`.
        context.sequence.set(next - 1);
        if context.has_dependents {
            context.wait.signal_all_when_blocking();
        }
    }
    finish(&context, consumer, report)
}

/// The sequence a batch has reached, copied out when it is dropped: on a
/// normal exit and while a handler's panic unwinds through the batch.
struct Progress<'a> {
    at: i64,
    out: &'a mut i64,
}

impl Drop for Progress<'_> {
    #[inline]
    fn drop(&mut self) {
        *self.out = self.at;
    }
}

/// The claim counter a worker pool shares: the next sequence no worker has
/// taken yet.
pub(crate) type WorkClaim = crossbeam_utils::CachePadded<crate::loom::sync::atomic::AtomicI64>;

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
    use crate::loom::sync::atomic::Ordering;

    let mut report = HandlerReport {
        name: context.name.clone(),
        events_handled: 0,
        events_skipped: 0,
        panic: None,
    };
    let ring = &*context.ring;
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
                    context.wait.signal_all_when_blocking();
                }
                claimed = Some(candidate);
                candidate
            }
        };
        match context.barrier.wait_for(next, next, context.timeout) {
            Ok(_) => {}
            Err(WaitOutcome::TimedOut) => {
                if let Err(message) = guarded(|| consumer.on_timeout(next - 1)) {
                    if record_panic(&context, &mut report, None, message) {
                        break;
                    }
                }
                continue;
            }
            Err(WaitOutcome::Drained) | Err(WaitOutcome::Halted) => break,
        }
        claimed = None;
        if let Err(message) = guarded(|| consumer.on_batch_start(1, 1)) {
            if record_panic(&context, &mut report, None, message) {
                break;
            }
        }
        let handled = guarded(|| consumer.consume(ring, next, true));
        match handled {
            Ok(()) => report.events_handled += 1,
            Err(message) => {
                if record_panic(&context, &mut report, Some(next), message) {
                    break;
                }
                report.events_skipped += 1;
            }
        }
    }
    finish(&context, consumer, report)
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
            context.ring.mark_halted();
            context.state.halt();
            context.wait.signal_all_when_blocking();
            true
        }
        PanicPolicy::LogAndSkip => {
            eprintln!("tickring: {panic}; skipping it (PanicPolicy::LogAndSkip)");
            report.panic.get_or_insert(panic);
            false
        }
    }
}
