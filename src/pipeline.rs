//! The running pipeline: its participants (handler threads, workers,
//! pollers), and the draining shutdown that joins their threads.

use std::sync::{Arc, PoisonError};

use crate::loom::sync::Mutex;
use crate::loom::thread::JoinHandle;
use crate::report::{panic_message, HandlerPanic, HandlerReport, ShutdownReport};
use crate::sequence::Sequence;
use crate::shared::Shared;
use crate::wait::WaitStrategy;

/// A handler, worker or poller: its name and its sequence (for lags).
#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) name: String,
    pub(crate) sequence: Arc<Sequence>,
}

type Threads = Vec<(String, JoinHandle<HandlerReport>)>;

/// The participants of a pipeline and the threads joined on shutdown.
pub(crate) struct Pipeline<E, W> {
    pub(crate) shared: Arc<Shared<E, W>>,
    pub(crate) participants: Vec<Participant>,
    /// Taken (emptied) by the first shutdown.
    threads: Mutex<Threads>,
}

impl<E, W> Pipeline<E, W>
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    pub(crate) fn new(
        shared: Arc<Shared<E, W>>,
        participants: Vec<Participant>,
        threads: Threads,
    ) -> Self {
        Self {
            shared,
            participants,
            threads: Mutex::new(threads),
        }
    }

    /// Each participant's name and how far it trails `last_published`.
    pub(crate) fn lags(&self, last_published: i64) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.participants.iter().map(move |participant| {
            let lag = last_published
                .saturating_sub(participant.sequence.get())
                .max(0) as u64;
            (participant.name.as_str(), lag)
        })
    }

    /// Drains and stops the pipeline: every participant handles everything
    /// up to `last_published`, dropped pollers are drained, and the threads
    /// are joined. Returns the report; on one of the pipeline's own threads
    /// (which cannot join itself) it leaves the joining to a reaper thread
    /// and returns an empty report (see `Producer::shutdown`). A second call
    /// finds no thread and returns an empty report.
    pub(crate) fn shut_down(&self, last_published: i64) -> ShutdownReport {
        self.shared.begin_shutdown(last_published);
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        if on_one_of(&threads) {
            reap_elsewhere(Arc::clone(&self.shared), threads);
            return ShutdownReport::default();
        }
        join_draining(&self.shared, threads)
    }
}

/// Whether the calling thread is one of `threads`.
fn on_one_of(threads: &Threads) -> bool {
    #[cfg(not(tickring_loom))]
    {
        let me = std::thread::current().id();
        threads.iter().any(|(_, join)| join.thread().id() == me)
    }
    #[cfg(tickring_loom)]
    {
        let _ = threads;
        false
    }
}

/// Joins every thread, draining dropped pollers meanwhile (a thread behind
/// one finishes only once it is drained). While a poller the user holds may
/// still be dropped, no join blocks: the orphan it would leave must be
/// drained here. The report keeps the threads' order.
fn join_draining<E, W: WaitStrategy>(shared: &Shared<E, W>, threads: Threads) -> ShutdownReport {
    let mut reports: Vec<Option<HandlerReport>> = threads.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, String, JoinHandle<HandlerReport>)> = threads
        .into_iter()
        .enumerate()
        .map(|(index, (name, join))| (index, name, join))
        .collect();
    // Yields, then sleeps up to a millisecond: a long drain does not take a
    // core from the threads it waits for.
    let mut backoff = ShutdownBackoff::default();
    loop {
        shared.poll_orphans();
        let mut waiting = Vec::with_capacity(pending.len());
        for (index, name, join) in pending {
            if is_finished(&join) || !shared.may_gain_orphans() {
                reports[index] = Some(join_one(name, join));
            } else {
                waiting.push((index, name, join));
            }
        }
        pending = waiting;
        if pending.is_empty() {
            break;
        }
        backoff.snooze();
    }
    // Orphans that no thread waits on still reach their end.
    while shared.has_orphans() {
        shared.poll_orphans();
        crate::loom::thread::yield_now();
    }
    ShutdownReport {
        handlers: reports.into_iter().flatten().collect(),
    }
}

/// The shutdown's wait between looks at its threads.
#[derive(Default)]
struct ShutdownBackoff {
    looks: u32,
}

impl ShutdownBackoff {
    fn snooze(&mut self) {
        self.looks = self.looks.saturating_add(1);
        #[cfg(not(tickring_loom))]
        if self.looks > 100 {
            let micros = 1u64 << (self.looks - 100).min(10);
            std::thread::sleep(std::time::Duration::from_micros(micros));
            return;
        }
        crate::loom::thread::yield_now();
    }
}

#[cfg(not(tickring_loom))]
fn is_finished(join: &JoinHandle<HandlerReport>) -> bool {
    join.is_finished()
}

#[cfg(tickring_loom)]
fn is_finished(_: &JoinHandle<HandlerReport>) -> bool {
    false
}

/// Joins one thread; a thread that unwound anyway (the guard in `build()`
/// catches everything, so this is a last resort) is reported as a panic.
fn join_one(name: String, join: JoinHandle<HandlerReport>) -> HandlerReport {
    join.join().unwrap_or_else(|payload| {
        let message = panic_message(payload.as_ref());
        crate::report::drop_payload(payload);
        let mut report = HandlerReport::new(name.clone());
        report.panic = Some(HandlerPanic {
            handler: name,
            sequence: None,
            message,
        });
        report
    })
}

/// Shutdown on one of the pipeline's own threads: a thread of its own joins
/// the others (and this one, once it returns), and prints any panic.
fn reap_elsewhere<E, W>(shared: Arc<Shared<E, W>>, threads: Threads)
where
    E: Send + Sync + 'static,
    W: WaitStrategy,
{
    let reaper = std::thread::Builder::new()
        .name("tickring-reaper".into())
        .spawn(move || {
            let report = join_draining(&shared, threads);
            if let Some(panic) = report.first_panic() {
                eprintln!("tickring: after a shutdown from a handler's own thread: {panic}");
            }
        });
    if let Err(error) = reaper {
        eprintln!("tickring: could not start the thread that joins the pipeline: {error}");
    }
}
