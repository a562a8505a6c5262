//! tickring over Aeron: rings on different hosts, connected by the transport
//! the field already uses. tickring adds no network protocol of its own.
//!
//! ```text
//! ring ─▶ AeronSink (a handler stage) ═ aeron:udp / aeron:ipc ═▶ AeronSource (a thread) ─▶ ring
//! ```
//!
//! - [`AeronSink`] is an [`EventHandler`]: put it in a pipeline like any
//!   other stage. Each event goes out as one Aeron message: `try_claim`
//!   (zero copy) when it fits the publication's payload, `offer` otherwise.
//!   What happens when Aeron cannot take it is chosen at build
//!   ([`BackPressure`]): wait up to a timeout, or drop and count. Every
//!   outcome has a counter ([`SinkCounters`]).
//! - [`AeronSource`] is a thread (named, pinnable) that polls a
//!   subscription, reassembles fragmented messages, decodes each and
//!   publishes it into any tickring producer (`EventProducer`), so the
//!   receiving side is an ordinary pipeline.
//! - **Framing**: each message is an 8-byte little-endian stream sequence
//!   (the sending ring's sequence) and the event's bytes. A source checks
//!   the sequence per publisher session and counts what is missing (a late
//!   join, a lost image, a dropped message) and new sessions (a publisher
//!   restart): [`SourceCounters`].
//! - **Events** are plain data ([`bytemuck::Pod`]) sent as their bytes, or
//!   anything with a [`Codec`].
//!
//! Build needs CMake ≥ 3.30, a C compiler, libclang, `uuid` and `libbsd`
//! headers (the Aeron C client is built from its vendored source); see the
//! repository README, "Beyond one host".

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusteron_client::{
    AeronFragmentAssembler, AeronFragmentHandlerCallback, AeronHeader, AeronOfferError,
    AeronPublication, AeronSubscription, Handler,
};
use tickring::{EventHandler, EventProducer};

pub use rusteron_client;

/// Errors the Aeron client reported (to its error handler), counted and
/// the last one kept. The C client's default handler prints and *exits the
/// process* (on a media driver that went away, for one); [`connect`]
/// installs this one instead, so such an error is a value to look at.
#[derive(Debug, Default)]
pub struct ClientErrors {
    count: AtomicU64,
    last: std::sync::Mutex<Option<(i32, String)>>,
}

impl ClientErrors {
    /// How many errors the client reported.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// The last one: Aeron's code and message.
    pub fn last(&self) -> Option<(i32, String)> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Connects an Aeron client to the media driver in `dir`, with an error
/// handler that records errors in the returned [`ClientErrors`] instead of
/// exiting the process, and `driver_timeout` (how long the driver may be
/// silent before the client closes and reports it).
///
/// # Errors
///
/// The client could not be created or started (no driver in `dir`, for
/// one).
pub fn connect(
    dir: &str,
    driver_timeout: Duration,
) -> Result<(rusteron_client::Aeron, Arc<ClientErrors>), rusteron_client::AeronCError> {
    use rusteron_client::{cformat, Aeron, AeronContext};
    let errors = Arc::new(ClientErrors::default());
    let context = AeronContext::new()?;
    context.set_dir(&cformat!("{dir}"))?;
    context.set_driver_timeout_ms(u64::try_from(driver_timeout.as_millis()).unwrap_or(u64::MAX))?;
    let recorder = Arc::clone(&errors);
    context.set_error_handler(Some(move |code: i32, message: &str| {
        recorder.count.fetch_add(1, Ordering::AcqRel);
        *recorder
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((code, message.to_owned()));
    }))?;
    let aeron = Aeron::new(&context)?;
    aeron.start()?;
    Ok((aeron, errors))
}

/// Bytes of the frame header: the stream sequence.
pub const HEADER_LEN: usize = 8;

/// How an event becomes message bytes and back.
pub trait Codec<E>: Send + 'static {
    /// The encoded length of `event` (at most the sink's message buffer).
    fn encoded_len(&self, event: &E) -> usize;
    /// Writes `event` into `out` (exactly `encoded_len` bytes).
    fn encode(&self, event: &E, out: &mut [u8]);
    /// Fills `event` from `bytes`; `false` if they are not a valid event.
    fn decode(&self, bytes: &[u8], event: &mut E) -> bool;
}

/// A plain-data event sent as its own bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PodCodec;

impl<E: bytemuck::Pod> Codec<E> for PodCodec {
    fn encoded_len(&self, _: &E) -> usize {
        std::mem::size_of::<E>()
    }

    fn encode(&self, event: &E, out: &mut [u8]) {
        out.copy_from_slice(bytemuck::bytes_of(event));
    }

    fn decode(&self, bytes: &[u8], event: &mut E) -> bool {
        if bytes.len() != std::mem::size_of::<E>() {
            return false;
        }
        bytemuck::bytes_of_mut(event).copy_from_slice(bytes);
        true
    }
}

/// What a sink does when Aeron cannot take a message now (not connected,
/// back-pressured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackPressure {
    /// Retry (spinning, then yielding) for up to this long, then drop the
    /// message and count it in `timed_out` and `dropped`. Nothing is lost
    /// while the subscribers keep up within the timeout.
    Wait(Duration),
    /// Drop the message at once and count it in `dropped`.
    Drop,
}

/// A sink's counters; read them from any thread.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Messages Aeron accepted.
    pub sent: AtomicU64,
    /// Messages given up (by `BackPressure::Drop`, a timeout, or a closed
    /// publication): each is an event the subscribers will not see.
    pub dropped: AtomicU64,
    /// `offer`/`try_claim` answers: no subscriber connected.
    pub not_connected: AtomicU64,
    /// ... back-pressured.
    pub back_pressured: AtomicU64,
    /// ... an administrative action (retried at once).
    pub admin_action: AtomicU64,
    /// ... the publication is closed, its position is exhausted, or another
    /// error (the message is dropped; so is every later one).
    pub closed: AtomicU64,
    /// Messages dropped because `BackPressure::Wait`'s timeout passed.
    pub timed_out: AtomicU64,
}

impl SinkCounters {
    /// A copy of the counters as plain numbers.
    pub fn snapshot(&self) -> SinkSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SinkSnapshot {
            sent: load(&self.sent),
            dropped: load(&self.dropped),
            not_connected: load(&self.not_connected),
            back_pressured: load(&self.back_pressured),
            admin_action: load(&self.admin_action),
            closed: load(&self.closed),
            timed_out: load(&self.timed_out),
        }
    }
}

/// [`SinkCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SinkSnapshot {
    pub sent: u64,
    pub dropped: u64,
    pub not_connected: u64,
    pub back_pressured: u64,
    pub admin_action: u64,
    pub closed: u64,
    pub timed_out: u64,
}

/// A handler stage that sends every event it is given to an Aeron
/// publication, framed with the event's ring sequence.
///
/// Draining comes with the pipeline: every event published before the
/// pipeline's shutdown reaches `on_event`, which returns only once the
/// message was sent or counted as dropped.
pub struct AeronSink<E, C: Codec<E> = PodCodec> {
    publication: AeronPublication,
    codec: C,
    policy: BackPressure,
    counters: Arc<SinkCounters>,
    /// For messages too large to claim: encoded here, then offered.
    buffer: Vec<u8>,
    max_claim: usize,
    _event: PhantomData<fn(&E)>,
}

impl<E, C: Codec<E>> AeronSink<E, C> {
    /// A sink on `publication`. `max_message` bounds an encoded event (the
    /// buffer for the `offer` path is allocated here, not per event).
    ///
    /// (A concurrent publication: Aeron's exclusive one is not `Send`, and a
    /// handler moves to its own thread.)
    pub fn new(
        publication: AeronPublication,
        codec: C,
        policy: BackPressure,
        max_message: usize,
    ) -> Self {
        // (If Aeron cannot say, every message takes the `offer` path.)
        let max_claim = publication.max_payload_length().unwrap_or(0);
        Self {
            publication,
            codec,
            policy,
            counters: Arc::default(),
            buffer: vec![0; HEADER_LEN + max_message],
            max_claim,
            _event: PhantomData,
        }
    }

    /// The counters, to read while the pipeline runs and after.
    pub fn counters(&self) -> Arc<SinkCounters> {
        Arc::clone(&self.counters)
    }

    /// One attempt to send `event` as message `sequence`.
    fn try_send(&mut self, event: &E, sequence: i64) -> Result<i64, AeronOfferError> {
        let len = HEADER_LEN + self.codec.encoded_len(event);
        if len <= self.max_claim {
            // Zero copy: encoded straight into the term buffer.
            let mut claim = self.publication.try_claim_owned(len)?;
            let data = claim.data();
            data[..HEADER_LEN].copy_from_slice(&sequence.to_le_bytes());
            self.codec.encode(event, &mut data[HEADER_LEN..len]);
            return claim.commit().map_err(AeronOfferError::Error);
        }
        let Some(buffer) = self.buffer.get_mut(..len) else {
            return Err(AeronOfferError::TooManyParts);
        };
        buffer[..HEADER_LEN].copy_from_slice(&sequence.to_le_bytes());
        self.codec.encode(event, &mut buffer[HEADER_LEN..]);
        self.publication.offer(buffer)
    }

    /// Sends `event`, waiting or dropping per the policy.
    fn send(&mut self, event: &E, sequence: i64) {
        let counters = Arc::clone(&self.counters);
        let mut deadline: Option<Instant> = None;
        let mut attempts: u32 = 0;
        loop {
            let error = match self.try_send(event, sequence) {
                Ok(_) => {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(error) => error,
            };
            match error {
                AeronOfferError::AdminAction => {
                    counters.admin_action.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                AeronOfferError::NotConnected => {
                    counters.not_connected.fetch_add(1, Ordering::Relaxed);
                }
                AeronOfferError::BackPressured => {
                    counters.back_pressured.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            match self.policy {
                BackPressure::Drop => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                BackPressure::Wait(timeout) => {
                    let now = Instant::now();
                    let deadline = *deadline.get_or_insert_with(|| now + timeout);
                    if now >= deadline {
                        counters.timed_out.fetch_add(1, Ordering::Relaxed);
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    attempts = attempts.saturating_add(1);
                    if attempts < 100 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
    }
}

impl<E, C: Codec<E>> EventHandler<E> for AeronSink<E, C> {
    fn on_event(&mut self, event: &E, sequence: i64, _end_of_batch: bool) {
        self.send(event, sequence);
    }
}

/// A source's counters; read them from any thread.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Messages received (reassembled).
    pub received: AtomicU64,
    /// Events published into the ring.
    pub published: AtomicU64,
    /// Times a session's sequence jumped ahead (a late join, a lost image,
    /// a message the sender dropped).
    pub gaps: AtomicU64,
    /// Sequences skipped by those jumps: events this side never saw.
    pub missing: AtomicU64,
    /// Messages from a new publisher session (the first one, or a
    /// restarted publisher).
    pub sessions: AtomicU64,
    /// Messages whose sequence went backwards within a session, or that
    /// did not decode: not published.
    pub rejected: AtomicU64,
}

impl SourceCounters {
    /// A copy of the counters as plain numbers.
    pub fn snapshot(&self) -> SourceSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SourceSnapshot {
            received: load(&self.received),
            published: load(&self.published),
            gaps: load(&self.gaps),
            missing: load(&self.missing),
            sessions: load(&self.sessions),
            rejected: load(&self.rejected),
        }
    }
}

/// [`SourceCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SourceSnapshot {
    pub received: u64,
    pub published: u64,
    pub gaps: u64,
    pub missing: u64,
    pub sessions: u64,
    pub rejected: u64,
}

/// Why a source's thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceEnd {
    /// [`AeronSource::stop`] was called.
    Stopped,
    /// The ring's producer refused a publish (the pipeline halted or was
    /// closed).
    RingStopped(String),
    /// Aeron reported an error polling (e.g. the media driver went away).
    Aeron(String),
}

/// How a source runs.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The thread's name.
    pub name: String,
    /// Pin the thread to this core.
    pub core: Option<usize>,
    /// Fragments per poll.
    pub fragment_limit: usize,
    /// Yield when a poll finds nothing (else spin).
    pub yield_when_idle: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            name: "tickring-aeron-source".into(),
            core: None,
            fragment_limit: 64,
            yield_when_idle: true,
        }
    }
}

/// A thread that polls an Aeron subscription and publishes every message
/// into a tickring producer.
pub struct AeronSource {
    stop: Arc<AtomicBool>,
    counters: Arc<SourceCounters>,
    thread: Option<JoinHandle<SourceEnd>>,
}

impl std::fmt::Debug for AeronSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeronSource")
            .field("counters", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

/// Decodes each reassembled message and publishes it.
struct Receive<E, P, C> {
    producer: P,
    codec: C,
    counters: Arc<SourceCounters>,
    /// (session id, next expected sequence) per publisher session seen.
    sessions: Vec<(i32, i64)>,
    ring_error: Option<String>,
    _event: PhantomData<fn(&mut E)>,
}

impl<E, P: EventProducer<E>, C: Codec<E>> AeronFragmentHandlerCallback for Receive<E, P, C> {
    fn handle_aeron_fragment_handler(&mut self, buffer: &[u8], header: AeronHeader) {
        let counters = &self.counters;
        counters.received.fetch_add(1, Ordering::Relaxed);
        if self.ring_error.is_some() || buffer.len() < HEADER_LEN {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut sequence_bytes = [0u8; HEADER_LEN];
        sequence_bytes.copy_from_slice(&buffer[..HEADER_LEN]);
        let sequence = i64::from_le_bytes(sequence_bytes);
        let session = header.session_id().unwrap_or(0);
        let expected = match self.sessions.iter_mut().find(|(id, _)| *id == session) {
            Some((_, next)) => next,
            None => {
                counters.sessions.fetch_add(1, Ordering::Relaxed);
                // A new session starts where the sender's ring was: the
                // first message says what came before it was not seen.
                self.sessions.push((session, 0));
                &mut self.sessions.last_mut().expect("just pushed").1
            }
        };
        if sequence < *expected {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if sequence > *expected {
            counters.gaps.fetch_add(1, Ordering::Relaxed);
            counters
                .missing
                .fetch_add((sequence - *expected) as u64, Ordering::Relaxed);
        }
        *expected = sequence + 1;
        let payload = &buffer[HEADER_LEN..];
        let codec = &self.codec;
        let mut valid = true;
        let published = self
            .producer
            .publish(|event| valid = codec.decode(payload, event));
        match published {
            Ok(_) if valid => {
                counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                // Published as decoded so far; counted so the receiver knows.
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.ring_error = Some(error.to_string()),
        }
    }
}

impl AeronSource {
    /// Starts the thread: it polls `subscription` until [`AeronSource::stop`],
    /// publishing each message into `producer` (which waits while the ring
    /// is full: back-pressure reaches Aeron's flow control).
    ///
    /// # Errors
    ///
    /// The fragment assembler could not be made, or the thread could not be
    /// spawned.
    pub fn spawn<E, P, C>(
        subscription: AeronSubscription,
        producer: P,
        codec: C,
        options: SourceOptions,
    ) -> Result<Self, String>
    where
        E: 'static,
        P: EventProducer<E> + Send + 'static,
        C: Codec<E>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SourceCounters::default());
        let receive = Receive {
            producer,
            codec,
            counters: Arc::clone(&counters),
            sessions: Vec::with_capacity(8),
            ring_error: None,
            _event: PhantomData,
        };
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(options.name.clone())
            .spawn(move || run_source(subscription, receive, options, stopping))
            .map_err(|error| format!("spawn the source thread: {error}"))?;
        Ok(Self {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The counters, to read while the source runs and after.
    pub fn counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether the thread has ended (stopped, or by an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread after its current poll and returns why it ended
    /// and its counters.
    pub fn stop(mut self) -> (SourceEnd, SourceSnapshot) {
        self.stop.store(true, Ordering::Release);
        let end = self.join_thread();
        (end, self.counters.snapshot())
    }

    fn join_thread(&mut self) -> SourceEnd {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(end)) => end,
            Some(Err(_)) => SourceEnd::Aeron("the source thread panicked".into()),
            None => SourceEnd::Stopped,
        }
    }
}

impl Drop for AeronSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.join_thread();
    }
}

fn run_source<E, P, C>(
    subscription: AeronSubscription,
    receive: Receive<E, P, C>,
    options: SourceOptions,
    stop: Arc<AtomicBool>,
) -> SourceEnd
where
    E: 'static,
    P: EventProducer<E> + 'static,
    C: Codec<E>,
{
    if let Some(core) = options.core {
        if let Err(error) = tickring::pin_current_thread(core) {
            return SourceEnd::Aeron(format!("pin to core {core}: {error}"));
        }
    }
    let (assembler, receive): (Handler<AeronFragmentAssembler>, Handler<Receive<E, P, C>>) =
        match Handler::with_fragment_assembler(receive) {
            Ok(handlers) => handlers,
            Err(error) => return SourceEnd::Aeron(format!("fragment assembler: {error:?}")),
        };
    let end = loop {
        if stop.load(Ordering::Acquire) {
            break SourceEnd::Stopped;
        }
        match subscription.poll(Some(&assembler), options.fragment_limit) {
            Ok(0) => {
                if options.yield_when_idle {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            Ok(_) => {}
            Err(error) => break SourceEnd::Aeron(format!("poll: {error:?}")),
        }
        if let Some(error) = &receive.ring_error {
            break SourceEnd::RingStopped(error.clone());
        }
    };
    drop(assembler);
    end
}
