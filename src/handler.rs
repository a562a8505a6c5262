//! Handlers: the user's code that a stage runs for every event.
//!
//! A closure `FnMut(&E, sequence, end_of_batch)` is a handler. A type that
//! needs the lifecycle hooks implements [`EventHandler`]; a stage that writes
//! the event (to decode or enrich it for the stages behind it) implements
//! [`MutEventHandler`] and must be alone in its stage.

/// A handler that reads events.
///
/// Every method but `on_event` has an empty default. All of them run on the
/// handler's own thread.
///
/// ```
/// use tickring::EventHandler;
///
/// struct Sum { total: i64, batches: u64 }
///
/// impl EventHandler<i64> for Sum {
///     fn on_event(&mut self, event: &i64, _sequence: i64, _end_of_batch: bool) {
///         self.total += *event;
///     }
///     fn on_batch_start(&mut self, _batch_size: i64, _queue_depth: i64) {
///         self.batches += 1;
///     }
/// }
///
/// let mut sum = Sum { total: 0, batches: 0 };
/// sum.on_batch_start(2, 2);
/// sum.on_event(&40, 0, false);
/// sum.on_event(&2, 1, true);
/// assert_eq!((sum.total, sum.batches), (42, 1));
/// ```
pub trait EventHandler<E> {
    /// Handles event `sequence`. `end_of_batch` is true for the last event of
    /// the batch the handler was given: the moment to flush coalesced I/O.
    fn on_event(&mut self, event: &E, sequence: i64, end_of_batch: bool);

    /// Called before each batch: `batch_size` events follow; `queue_depth`
    /// events were known to be available (at least `batch_size`). A later
    /// stage learns its whole backlog from its upstream sequences, so its
    /// `queue_depth` exceeds `batch_size` when `max_batch_size` cut the
    /// batch; a first-stage handler reads stamps no further than
    /// `max_batch_size`, so there the two are equal.
    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        let _ = (batch_size, queue_depth);
    }

    /// Called once, on the handler's thread, before the first event.
    fn on_start(&mut self) {}

    /// Called once, on the handler's thread, after the last event.
    fn on_shutdown(&mut self) {}

    /// Called when no event arrived within the handler's `wait_timeout`;
    /// `sequence` is the last sequence handled. The wait then resumes.
    fn on_timeout(&mut self, sequence: i64) {
        let _ = sequence;
    }
}

impl<E, F> EventHandler<E> for F
where
    F: FnMut(&E, i64, bool),
{
    #[inline]
    fn on_event(&mut self, event: &E, sequence: i64, end_of_batch: bool) {
        self(event, sequence, end_of_batch)
    }
}

/// A handler that may modify events for the stages behind it.
///
/// It must be alone in its stage (`build()` refuses otherwise), so no other
/// handler touches the event while it holds `&mut E`.
///
/// ```
/// use tickring::MutEventHandler;
///
/// struct Decode;
/// impl MutEventHandler<(u32, f64)> for Decode {
///     fn on_event(&mut self, event: &mut (u32, f64), _sequence: i64, _end_of_batch: bool) {
///         event.1 = event.0 as f64 / 100.0;
///     }
/// }
///
/// let mut event = (12_345, 0.0);
/// Decode.on_event(&mut event, 0, true);
/// assert_eq!(event.1, 123.45);
/// ```
pub trait MutEventHandler<E> {
    /// Handles (and may modify) event `sequence`; see
    /// [`EventHandler::on_event`].
    fn on_event(&mut self, event: &mut E, sequence: i64, end_of_batch: bool);

    /// See [`EventHandler::on_batch_start`].
    #[inline]
    fn on_batch_start(&mut self, batch_size: i64, queue_depth: i64) {
        let _ = (batch_size, queue_depth);
    }

    /// See [`EventHandler::on_start`].
    fn on_start(&mut self) {}

    /// See [`EventHandler::on_shutdown`].
    fn on_shutdown(&mut self) {}

    /// See [`EventHandler::on_timeout`].
    fn on_timeout(&mut self, sequence: i64) {
        let _ = sequence;
    }
}

impl<E, F> MutEventHandler<E> for F
where
    F: FnMut(&mut E, i64, bool),
{
    #[inline]
    fn on_event(&mut self, event: &mut E, sequence: i64, end_of_batch: bool) {
        self(event, sequence, end_of_batch)
    }
}
