//! Where threads run and how they wait: busy-spinning pinned threads only
//! when each has a core of its own; otherwise spin briefly, then yield.

use std::thread::{self, JoinHandle};

use crossbeam_utils::Backoff;

/// How every waiting thread of a run waits, whatever the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// `spin_loop` between polls: pinned threads with a core each
    /// (tickring `BusySpin`, the `disruptor` crate's `BusySpin`).
    Spin,
    /// Spin a little, then yield (`crossbeam_utils::Backoff::snooze`;
    /// tickring `Yielding`, [`DisruptorYielding`](crate::peers::DisruptorYielding)).
    Yield,
    /// tickring's `Blocking`: handlers sleep until a publish wakes them. The
    /// harness's own loops and the peers treat it as `Yield`.
    Block,
}

impl Waiting {
    /// Polls `ready` until it returns `Some`, waiting between polls.
    #[inline]
    pub fn until<T>(self, mut ready: impl FnMut() -> Option<T>) -> T {
        let backoff = Backoff::new();
        loop {
            if let Some(value) = ready() {
                return value;
            }
            match self {
                Waiting::Spin => std::hint::spin_loop(),
                Waiting::Yield | Waiting::Block => backoff.snooze(),
            }
        }
    }
}

impl std::str::FromStr for Waiting {
    type Err = &'static str;

    /// `spin`, `yield` or `block`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "spin" => Ok(Waiting::Spin),
            "yield" => Ok(Waiting::Yield),
            "block" => Ok(Waiting::Block),
            _ => Err("expected spin, yield or block"),
        }
    }
}

/// Runs `$body` with `$wait` bound to a maker of tickring's strategy for a
/// [`Waiting`] (call `$wait()` for each ring): the strategy is a type
/// parameter, so each arm is its own monomorphized pipeline.
#[macro_export]
macro_rules! with_tickring_wait {
    ($waiting:expr, |$wait:ident| $body:expr) => {
        match $waiting {
            $crate::place::Waiting::Spin => {
                let $wait = || ::tickring::BusySpin;
                $body
            }
            $crate::place::Waiting::Yield => {
                let $wait = ::tickring::Yielding::new;
                $body
            }
            $crate::place::Waiting::Block => {
                let $wait = ::tickring::Blocking::new;
                $body
            }
        }
    };
}

/// The cores of a run's busy threads (thread 0 first), from
/// [`tickring::allowed_cores`], and how they wait.
#[derive(Debug, Clone)]
pub struct Placement {
    cores: Vec<Option<usize>>,
    waiting: Waiting,
}

impl Placement {
    /// For `threads` busy threads: with a core each, each is pinned to its
    /// own and they busy-spin; with at least two cores, they share them
    /// (thread `i` on core `i * cores / threads`, neighbours together) and
    /// yield; with fewer, nothing is pinned and they yield.
    pub fn for_threads(threads: usize) -> Self {
        let allowed = tickring::allowed_cores();
        let (cores, waiting) = if allowed.len() >= threads {
            (
                allowed.iter().copied().map(Some).take(threads).collect(),
                Waiting::Spin,
            )
        } else if allowed.len() >= 2 {
            let cores = (0..threads).map(|thread| Some(allowed[thread * allowed.len() / threads]));
            (cores.collect(), Waiting::Yield)
        } else {
            (vec![None; threads], Waiting::Yield)
        };
        Self { cores, waiting }
    }

    /// For `threads` busy threads that are pinned only with a core each
    /// (and then busy-spin); otherwise none is pinned and they yield.
    pub fn exclusive(threads: usize) -> Self {
        let shared = Self::for_threads(threads);
        match shared.waiting {
            Waiting::Spin => shared,
            _ => Self {
                cores: vec![None; threads],
                waiting: Waiting::Yield,
            },
        }
    }

    /// The same cores, waiting as `waiting` says instead.
    pub fn with_waiting(mut self, waiting: Waiting) -> Self {
        self.waiting = waiting;
        self
    }

    /// The core of thread `thread`, if pinned.
    pub fn core(&self, thread: usize) -> Option<usize> {
        self.cores.get(thread).copied().flatten()
    }

    pub fn waiting(&self) -> Waiting {
        self.waiting
    }

    /// One line for the output: where the threads run and how they wait.
    pub fn describe(&self) -> String {
        let cores: Vec<String> = self
            .cores
            .iter()
            .map(|core| core.map_or("-".to_owned(), |core| core.to_string()))
            .collect();
        format!(
            "{} threads on cores [{}] of allowed {:?}, waiting: {:?}",
            self.cores.len(),
            cores.join(" "),
            tickring::allowed_cores(),
            self.waiting
        )
    }
}

/// Starts `body` on a thread named `name`, pinned to `core` if given.
pub fn spawn_on<T: Send + 'static>(
    name: &str,
    core: Option<usize>,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(core) = core {
                if let Err(error) = tickring::pin_current_thread(core) {
                    eprintln!(
                        "warning: thread {:?} not pinned: {error}",
                        thread::current().name()
                    );
                }
            }
            body()
        })
        .expect("spawn a harness thread")
}
