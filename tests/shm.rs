//! The shared-memory ring (`tickring::shm`) between processes.
//!
//! The multi-process tests re-execute this test binary: a parent test
//! spawns children with `--exact <its own name>` and the environment
//! variable `TICKRING_SHM_ROLE` (`role=<name> key=value ...`); the same test
//! function, seeing the variable, runs that role instead of the test and
//! exits with its status (see `run_role_if_child`). A plain run of the
//! suite runs only parents. A child reports through its exit status and
//! through lines on stdout: `READY`, `JOINED ...`, `PROGRESS ...`,
//! `STALLED ...`, `RESULT key=value ...`, `ERROR ...`.
//!
//! - One producer and three consumer processes, 10^7 events, rings of 4
//!   and of 65536: every consumer checks every event's content, its order
//!   and the count.
//! - A consumer that stops reading and is then killed with SIGKILL: the
//!   producer evicts it and finishes; the others see every event.
//! - A producer killed with SIGKILL: the consumers report `ProducerDead`
//!   after exactly the events it fully published.
//! - Opens and creates that must fail, each with its exact `ShmError`, and
//!   each numeric option at its edges.
//! - Late joiners: at the cursor, at a sequence still in the ring (or not
//!   yet published), at one already overwritten; an explicit join that the
//!   producer does not take in time.
//!
//! Every wait is bounded: children are waited for with a deadline and
//! killed (by their own pid) on timeout; a guard kills any child still
//! running when a test ends or panics, and another removes the test's ring
//! file. The machine this was written on has two cores: the multi-process
//! tests run one at a time (`serial`), and every waiting side yields
//! (`Yielding`, `FullRingWait::Yield`) rather than spins.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use tickring::shm::{
    ConsumeError, JoinAt, ShmConsumer, ShmConsumerOptions, ShmError, ShmEvent, ShmOptions,
    ShmPollState, ShmProducer, MAX_CONSUMERS, MAX_SHM_CAPACITY,
};
use tickring::{EventHandler, EventProducer, FullRingWait, TryPublishError, Yielding};

// ---------------------------------------------------------------------------
// The event and its check

/// 64 bytes, every field derived from the sequence: a torn, stale, shifted
/// or overwritten slot shows in at least one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
struct Tick {
    sequence: u64,
    triple: u64,
    xored: u64,
    rotated: u64,
    inverted: u64,
    mixed: u64,
    offset: u64,
    checksum: u64,
}

impl ShmEvent for Tick {
    const SCHEMA_NAME: &'static str = "tickring.test.tick";
    const SCHEMA_VERSION: u32 = 1;
}

impl Tick {
    fn for_sequence(sequence: i64) -> Self {
        let x = sequence as u64;
        let mut tick = Self {
            sequence: x,
            triple: x.wrapping_mul(3).wrapping_add(1),
            xored: x ^ 0xa5a5_a5a5_a5a5_a5a5,
            rotated: x.rotate_left(29),
            inverted: !x,
            mixed: x.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            offset: x.wrapping_add(0x1234_5678_9abc),
            checksum: 0,
        };
        let words: [u64; 8] = bytemuck::cast(tick);
        tick.checksum = words[..7].iter().fold(0xcbf2_9ce4_8422_2325, |hash, word| {
            (hash ^ word).wrapping_mul(0x0100_0000_01b3)
        });
        tick
    }
}

/// Checks that events come in order from `next`, each with the content
/// of its sequence; counts them.
struct Checker {
    next: i64,
    count: u64,
    errors: u64,
    first_error: Option<String>,
    /// Print `PROGRESS` once, at this count.
    progress_at: Option<u64>,
}

impl Checker {
    fn new(first: i64) -> Self {
        Self {
            next: first,
            count: 0,
            errors: 0,
            first_error: None,
            progress_at: None,
        }
    }

    fn fail(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn last(&self) -> i64 {
        self.next - 1
    }
}

impl EventHandler<Tick> for Checker {
    fn on_event(&mut self, event: &Tick, sequence: i64, _end_of_batch: bool) {
        if sequence != self.next {
            self.fail(format!(
                "sequence {sequence} where {} was expected",
                self.next
            ));
        }
        if *event != Tick::for_sequence(sequence) {
            self.fail(format!("event {sequence} holds {event:?}"));
        }
        self.next = sequence + 1;
        self.count += 1;
        if self.progress_at == Some(self.count) {
            println!("PROGRESS count={}", self.count);
        }
    }
}

// ---------------------------------------------------------------------------
// Ring files

/// A unique path for a ring: under `/dev/shm` where it exists.
fn unique_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "tickring-test-{}-{name}-{counter}",
        std::process::id()
    ))
}

/// Removes the ring file (and any temporary file a killed creator left
/// next to it) when the test ends, also on a panic.
struct FileGuard {
    path: PathBuf,
}

impl FileGuard {
    fn new(name: &str) -> Self {
        Self {
            path: unique_path(name),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a role parameter (no spaces: `unique_path` makes none).
    fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let temp_prefix = format!("{}.tmp.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&temp_prefix)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// A ring of `Tick` at `path`, left in place when closed, for the tests
/// that damage the file; returns the file's length.
fn closed_ring(path: &Path, capacity: usize) -> u64 {
    let producer =
        ShmProducer::<Tick>::create(path, &ShmOptions::new(capacity).remove_on_close(false))
            .expect("create the ring");
    producer.close();
    std::fs::metadata(path).expect("the ring file").len()
}

fn write_word(path: &Path, offset: u64, value: u64) {
    let file = OpenOptions::new().write(true).open(path).expect("open");
    file.write_at(&value.to_ne_bytes(), offset).expect("write");
}

// ---------------------------------------------------------------------------
// Children: roles, spawning, bounded waits

const ROLE_VAR: &str = "TICKRING_SHM_ROLE";

/// How long a child waits for its peers (the file to appear, consumers
/// to join) before giving up.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// The multi-process tests run one at a time: each starts up to four
/// processes, on a machine that may have two cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child's parameters: `key=value` words.
#[derive(Debug, Default)]
struct Params(HashMap<String, String>);

impl Params {
    fn parse(text: &str) -> Self {
        Self(
            text.split_whitespace()
                .filter_map(|word| word.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    fn str(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("no `{key}` in {:?}", self.0))
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> T {
        self.str(key)
            .parse()
            .unwrap_or_else(|_| panic!("`{key}` is not a number in {:?}", self.0))
    }

    fn opt_num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.0.contains_key(key).then(|| self.num(key))
    }

    fn millis(&self, key: &str) -> Duration {
        Duration::from_millis(self.num(key))
    }
}

/// First thing in every test that re-executes itself: in a child, runs the
/// role and exits with its status; in the parent, returns.
fn run_role_if_child() {
    let Ok(spec) = std::env::var(ROLE_VAR) else {
        return;
    };
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` only sets this process's parent-death
    // signal; no memory is passed. A child whose parent test dies is killed
    // instead of running on.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    let params = Params::parse(&spec);
    let code = match params.str("role") {
        "producer" => producer_role(&params),
        "consumer" => consumer_role(&params),
        "staller" => staller_role(&params),
        "open_denied" => open_denied_role(&params),
        other => {
            println!("ERROR unknown role {other}");
            100
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Creates the ring, waits (bounded) for `consumers` to join, publishes
/// `events` (0: until killed, at most two minutes), closes.
fn producer_role(params: &Params) -> i32 {
    let path = params.str("path");
    let events: u64 = params.num("events");
    let options = ShmOptions::new(params.num("capacity"))
        .liveness_timeout(params.millis("liveness_ms"))
        .heartbeat_interval(params.millis("heartbeat_ms"))
        .full_ring_wait(FullRingWait::Yield);
    let mut producer = match ShmProducer::<Tick>::create(path, &options) {
        Ok(producer) => producer,
        Err(error) => {
            println!("ERROR create: {error}");
            return 10;
        }
    };
    let consumers: usize = params.num("consumers");
    let deadline = Instant::now() + JOIN_LIMIT;
    while producer.active_consumers() < consumers {
        if Instant::now() > deadline {
            println!(
                "ERROR only {} of {consumers} consumers joined",
                producer.active_consumers()
            );
            return 11;
        }
        thread::sleep(Duration::from_millis(1));
    }
    println!("READY");
    let start = Instant::now();
    let mut sequence = 0i64;
    while events == 0 || (sequence as u64) < events {
        if events == 0 && sequence % 4096 == 0 && start.elapsed() > Duration::from_secs(120) {
            println!("ERROR nobody killed the producer");
            return 12;
        }
        match producer.publish(|tick| *tick = Tick::for_sequence(sequence)) {
            Ok(published) if published == sequence => sequence += 1,
            Ok(published) => {
                println!("ERROR published {published} where {sequence} was expected");
                return 13;
            }
            Err(error) => {
                println!("ERROR publish: {error}");
                return 14;
            }
        }
    }
    let report = producer.close();
    println!(
        "RESULT published={} evictions={} ms={}",
        report.published,
        report.evictions,
        start.elapsed().as_millis()
    );
    0
}

/// Opens the ring, retrying while the file does not exist yet (bounded).
fn open_with_retry(path: &str, options: &ShmConsumerOptions) -> Result<ShmConsumer<Tick>, String> {
    let deadline = Instant::now() + JOIN_LIMIT;
    loop {
        match ShmConsumer::<Tick>::open(path, options) {
            Ok(consumer) => return Ok(consumer),
            Err(ShmError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(2));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// A child consumer joins at the cursor before the producer publishes:
/// the producer starts once `active_consumers()` counts every consumer,
/// which it does only once each has fixed its start, so each starts at 0.
fn consumer_options(params: &Params) -> ShmConsumerOptions {
    ShmConsumerOptions::new()
        .join_timeout(JOIN_LIMIT)
        .liveness_timeout(params.millis("liveness_ms"))
        .heartbeat_interval(params.millis("heartbeat_ms"))
}

/// Joins before the producer publishes, runs until the ring closes (or the
/// producer dies, or evicts it), checking every event from sequence 0.
fn consumer_role(params: &Params) -> i32 {
    let mut consumer = match open_with_retry(params.str("path"), &consumer_options(params)) {
        Ok(consumer) => consumer,
        Err(error) => {
            println!("ERROR open: {error}");
            return 20;
        }
    };
    println!("JOINED next={}", consumer.next_sequence());
    let mut checker = Checker::new(0);
    checker.progress_at = params.opt_num("progress_at");
    let start = Instant::now();
    let result = consumer.run(&mut checker, &Yielding::new());
    let (outcome, last_handled) = match result {
        Ok(_) => ("closed", checker.last()),
        Err(ConsumeError::ProducerDead { last_handled }) => ("dead", last_handled),
        Err(ConsumeError::Evicted { last_handled }) => ("evicted", last_handled),
        Err(other) => {
            println!("ERROR run: {other}");
            return 21;
        }
    };
    println!(
        "RESULT outcome={outcome} last_handled={last_handled} count={} errors={} ms={}",
        checker.count,
        checker.errors,
        start.elapsed().as_millis()
    );
    if let Some(error) = checker.first_error {
        println!("ERROR first bad event: {error}");
        return 22;
    }
    0
}

/// Joins, handles `stall_after` events, then stops reading and sleeps
/// (holding the producer back) until killed (at most five minutes).
fn staller_role(params: &Params) -> i32 {
    let mut consumer = match open_with_retry(params.str("path"), &consumer_options(params)) {
        Ok(consumer) => consumer,
        Err(error) => {
            println!("ERROR open: {error}");
            return 30;
        }
    };
    let stall_after: u64 = params.num("stall_after");
    let mut checker = Checker::new(0);
    let deadline = Instant::now() + JOIN_LIMIT;
    while checker.count < stall_after {
        match consumer.poll(&mut checker) {
            Ok(ShmPollState::Handled(_)) => {}
            Ok(ShmPollState::Idle) if Instant::now() < deadline => thread::yield_now(),
            other => {
                println!("ERROR poll: {other:?} after {} events", checker.count);
                return 31;
            }
        }
    }
    println!(
        "STALLED last_handled={} errors={}",
        checker.last(),
        checker.errors
    );
    thread::sleep(Duration::from_secs(300));
    println!("ERROR nobody killed the staller");
    32
}

/// Drops root's credentials for `nobody`, then opens a ring that root
/// created with mode 0o600: `Io` with `PermissionDenied`.
///
/// The credentials change through raw system calls, which on Linux change
/// the calling thread's only. glibc's `setuid` and friends instead signal
/// every thread of the process (`SIGSETXID`) to change them too, and the
/// libtest main thread then runs that handler on its alternate signal stack
/// — which `std::process::exit`, called from this test thread, unmaps. The
/// main thread, still returning from the handler, died of SIGSEGV in about
/// one exit in thirty (one CI failure, reproduced here). One thread is all
/// the open needs.
fn open_denied_role(params: &Params) -> i32 {
    const NOBODY: libc::c_long = 65534;
    // SAFETY: raw setgroups/setresgid/setresuid change this thread's
    // credentials only; `setgroups(0, null)` reads no memory. Nothing on this
    // thread relies on running as root afterwards.
    let status = unsafe {
        [
            libc::syscall(
                libc::SYS_setgroups,
                0 as libc::c_long,
                std::ptr::null::<libc::gid_t>(),
            ),
            libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
            libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
        ]
    };
    if status.iter().any(|&status| status != 0) {
        println!(
            "ERROR could not become nobody: {status:?} {}",
            std::io::Error::last_os_error()
        );
        return 40;
    }
    match ShmConsumer::<Tick>::open(params.str("path"), &ShmConsumerOptions::new()) {
        Err(ShmError::Io {
            operation, source, ..
        }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            println!("RESULT error=PermissionDenied operation={operation}");
            0
        }
        Err(error) => {
            println!("ERROR expected PermissionDenied, got {error:?}");
            41
        }
        Ok(_) => {
            println!("ERROR opened a 0o600 root ring as nobody");
            42
        }
    }
}

/// A child's stdout or stderr, read to its end by a thread of its own.
#[derive(Default)]
struct Output {
    text: Mutex<String>,
    /// The pipe reached its end (the child exited).
    closed: AtomicBool,
}

impl Output {
    fn collect(pipe: impl Read + Send + 'static) -> Arc<Self> {
        let output = Arc::new(Self::default());
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.text.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
            sink.closed.store(true, Ordering::Release);
        });
        output
    }

    fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The first report that starts with `marker` (`RESULT`, `PROGRESS`...),
/// from the marker to the end of its line. A marker may follow other text
/// on its line: the test harness prints `test <name> ... ` before the test
/// runs.
fn find_report(text: &str, marker: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.find(marker).map(|at| line[at..].to_owned()))
}

/// One spawned child: its output and its status once known.
struct Proc {
    label: String,
    child: Child,
    stdout: Arc<Output>,
    stderr: Arc<Output>,
    status: Option<ExitStatus>,
    /// Killed by the test on purpose (not a failure).
    killed: bool,
}

/// The children of one test. Dropping it (the test ends or panics) kills
/// every child still running, by its own pid, and reaps it.
struct Procs {
    test: &'static str,
    procs: Vec<Proc>,
}

impl Procs {
    fn new(test: &'static str) -> Self {
        Self {
            test,
            procs: Vec::new(),
        }
    }

    /// Re-executes this binary to run only `self.test`, as `role`.
    fn spawn(&mut self, label: &str, role: String) -> usize {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--exact", self.test, "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, &role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{}: spawn {label}: {error}", self.test));
        let stdout = Output::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Output::collect(child.stderr.take().expect("piped stderr"));
        self.procs.push(Proc {
            label: label.to_owned(),
            child,
            stdout,
            stderr,
            status: None,
            killed: false,
        });
        self.procs.len() - 1
    }

    fn stdout(&self, index: usize) -> String {
        self.procs[index].stdout.text()
    }

    /// Reaps a child that exited; true when it is still running.
    fn running(&mut self, index: usize) -> bool {
        let proc = &mut self.procs[index];
        if proc.status.is_none() {
            proc.status = proc.child.try_wait().expect("try_wait");
        }
        proc.status.is_none()
    }

    /// Fails the test (the guard then kills the rest) when a child exited
    /// unsuccessfully on its own.
    fn check_no_failure(&mut self) {
        for index in 0..self.procs.len() {
            self.running(index);
            let proc = &self.procs[index];
            let failed = proc.status.is_some_and(|status| !status.success());
            if failed && !proc.killed {
                let label = proc.label.clone();
                self.fail(&format!("{label} failed"));
            }
        }
    }

    /// Waits until child `index` reports `marker`; returns the report.
    fn wait_report(&mut self, index: usize, marker: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            // Read before looking at the pipe: a report printed before it
            // closed is in the text.
            let closed = self.procs[index].stdout.is_closed();
            if let Some(report) = find_report(&self.stdout(index), marker) {
                return report;
            }
            self.check_no_failure();
            let label = self.procs[index].label.clone();
            if closed {
                self.fail(&format!("{label} exited without reporting {marker}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("{label} did not report {marker} within {limit:?}"));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for every child to exit, each successfully (but those killed
    /// on purpose); on the deadline, kills them and fails.
    fn wait_all(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.check_no_failure();
            if (0..self.procs.len()).all(|index| !self.running(index)) {
                break;
            }
            if Instant::now() > deadline {
                self.fail(&format!("children still running after {limit:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Every child exited: their pipes close; read them to the end.
        let drained = Instant::now() + Duration::from_secs(10);
        while !self
            .procs
            .iter()
            .all(|proc| proc.stdout.is_closed() && proc.stderr.is_closed())
        {
            if Instant::now() > drained {
                self.fail("a child's output did not end");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs child `index` (through `Child::kill`, by its pid) and
    /// reaps it.
    fn kill(&mut self, index: usize) -> ExitStatus {
        let proc = &mut self.procs[index];
        assert!(
            proc.status.is_none(),
            "{} exited before it was killed",
            proc.label
        );
        proc.child.kill().expect("kill");
        let status = proc.child.wait().expect("wait");
        proc.status = Some(status);
        proc.killed = true;
        status
    }

    /// The child's `RESULT` report, parsed.
    fn result(&self, index: usize) -> Params {
        let line = find_report(&self.stdout(index), "RESULT ").unwrap_or_else(|| {
            panic!(
                "{}: {} printed no RESULT\n{}",
                self.test,
                self.procs[index].label,
                self.report()
            )
        });
        Params::parse(&line)
    }

    /// Every child's status and output, for failure messages.
    fn report(&self) -> String {
        let tail = |text: &str| {
            let start = text.len().saturating_sub(4000);
            let start = (start..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text[start..].to_owned()
        };
        let mut report = String::new();
        for proc in &self.procs {
            let (stdout, stderr) = (proc.stdout.text(), proc.stderr.text());
            report += &format!(
                "--- {} (pid {}): {:?}\nstdout:\n{}stderr:\n{}\n",
                proc.label,
                proc.child.id(),
                proc.status,
                tail(&stdout),
                tail(&stderr)
            );
        }
        report
    }

    fn fail(&mut self, what: &str) -> ! {
        self.kill_running();
        thread::sleep(Duration::from_millis(100));
        panic!("{}: {what}\n{}", self.test, self.report());
    }

    fn kill_running(&mut self) {
        for proc in &mut self.procs {
            if proc.status.is_none() {
                if let Ok(Some(status)) = proc.child.try_wait() {
                    proc.status = Some(status);
                    continue;
                }
                let _ = proc.child.kill();
                proc.status = proc.child.wait().ok();
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_running();
    }
}

// ---------------------------------------------------------------------------
// 1. One producer, three consumer processes

/// Events per consumer in the throughput tests: 10^7 in release, a fifth
/// in unoptimized builds (as `tests/common::events`). On a 2-core machine
/// the ring of 4 takes 35 to 40 s in release (75 s while a build ran
/// beside it): four processes take turns on two cores, a handoff every
/// four events. The ring of 65536 takes under 1 s.
const EVENTS: u64 = if cfg!(debug_assertions) {
    2_000_000
} else {
    10_000_000
};

fn one_producer_three_consumers(test: &'static str, capacity: usize, limit: Duration) {
    let _serial = serial();
    let file = FileGuard::new(&format!("p1c3-{capacity}"));
    let mut procs = Procs::new(test);
    let producer = procs.spawn(
        "producer",
        format!(
            "role=producer path={} capacity={capacity} events={EVENTS} consumers=3 \
             liveness_ms=2000 heartbeat_ms=20",
            file.arg()
        ),
    );
    let consumers: Vec<usize> = (0..3)
        .map(|i| {
            procs.spawn(
                &format!("consumer {i}"),
                format!(
                    "role=consumer path={} liveness_ms=2000 heartbeat_ms=20",
                    file.arg()
                ),
            )
        })
        .collect();
    procs.wait_all(limit);
    let report = procs.result(producer);
    assert_eq!(report.num::<u64>("published"), EVENTS, "{}", procs.report());
    assert_eq!(report.num::<u64>("evictions"), 0, "{}", procs.report());
    for &consumer in &consumers {
        let result = procs.result(consumer);
        assert_eq!(result.str("outcome"), "closed", "{}", procs.report());
        assert_eq!(result.num::<u64>("errors"), 0, "{}", procs.report());
        assert_eq!(result.num::<u64>("count"), EVENTS, "{}", procs.report());
        assert_eq!(
            result.num::<i64>("last_handled"),
            EVENTS as i64 - 1,
            "{}",
            procs.report()
        );
    }
    assert!(!file.path().exists(), "close removed the ring file");
}

#[test]
fn one_producer_three_consumer_processes_ring_4() {
    run_role_if_child();
    one_producer_three_consumers(
        "one_producer_three_consumer_processes_ring_4",
        4,
        Duration::from_secs(300),
    );
}

#[test]
fn one_producer_three_consumer_processes_ring_65536() {
    run_role_if_child();
    one_producer_three_consumers(
        "one_producer_three_consumer_processes_ring_65536",
        65536,
        Duration::from_secs(300),
    );
}

// ---------------------------------------------------------------------------
// 2. A consumer killed with SIGKILL

#[test]
fn consumer_killed_with_sigkill_is_evicted() {
    const TEST: &str = "consumer_killed_with_sigkill_is_evicted";
    const TOTAL: u64 = 200_000;
    const CAPACITY: u64 = 1024;
    const STALL_AFTER: u64 = 1000;
    const LIVENESS: Duration = Duration::from_millis(200);
    run_role_if_child();
    let _serial = serial();
    let file = FileGuard::new("killed-consumer");
    let mut procs = Procs::new(TEST);
    let producer = procs.spawn(
        "producer",
        format!(
            "role=producer path={} capacity={CAPACITY} events={TOTAL} consumers=3 \
             liveness_ms={} heartbeat_ms=10",
            file.arg(),
            LIVENESS.as_millis()
        ),
    );
    // Heartbeats every 5 ms, well under the producer's 200 ms timeout.
    let consumers: Vec<usize> = (0..2)
        .map(|i| {
            procs.spawn(
                &format!("consumer {i}"),
                format!(
                    "role=consumer path={} liveness_ms=2000 heartbeat_ms=5",
                    file.arg()
                ),
            )
        })
        .collect();
    let staller = procs.spawn(
        "staller",
        format!(
            "role=staller path={} liveness_ms=2000 heartbeat_ms=5 stall_after={STALL_AFTER}",
            file.arg()
        ),
    );
    let stalled = procs.wait_report(staller, "STALLED", Duration::from_secs(60));
    assert_eq!(
        Params::parse(&stalled).num::<u64>("errors"),
        0,
        "{}",
        procs.report()
    );
    // Alive (its heartbeat runs) but not reading: the producer, which
    // cannot publish more than a ring past it, waits for it however long.
    thread::sleep(LIVENESS * 4);
    assert!(
        procs.running(producer),
        "the producer finished while a live consumer held it back\n{}",
        procs.report()
    );
    let status = procs.kill(staller);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", procs.report());
    procs.wait_all(Duration::from_secs(120));
    let report = procs.result(producer);
    assert_eq!(report.num::<u64>("published"), TOTAL, "{}", procs.report());
    assert!(
        report.num::<u64>("evictions") >= 1,
        "the killed consumer was evicted\n{}",
        procs.report()
    );
    for &consumer in &consumers {
        let result = procs.result(consumer);
        assert_eq!(result.str("outcome"), "closed", "{}", procs.report());
        assert_eq!(result.num::<u64>("errors"), 0, "{}", procs.report());
        assert_eq!(result.num::<u64>("count"), TOTAL, "{}", procs.report());
        assert_eq!(
            result.num::<i64>("last_handled"),
            TOTAL as i64 - 1,
            "{}",
            procs.report()
        );
    }
}

// ---------------------------------------------------------------------------
// 3. The producer killed with SIGKILL

#[test]
fn producer_killed_with_sigkill() {
    const TEST: &str = "producer_killed_with_sigkill";
    const PROGRESS_AT: u64 = 100_000;
    run_role_if_child();
    let _serial = serial();
    let file = FileGuard::new("killed-producer");
    let mut procs = Procs::new(TEST);
    // Publishes until killed; heartbeats every 10 ms, well under the
    // consumers' 300 ms timeout.
    let producer = procs.spawn(
        "producer",
        format!(
            "role=producer path={} capacity=1024 events=0 consumers=3 \
             liveness_ms=2000 heartbeat_ms=10",
            file.arg()
        ),
    );
    let consumers: Vec<usize> = (0..3)
        .map(|i| {
            procs.spawn(
                &format!("consumer {i}"),
                format!(
                    "role=consumer path={} liveness_ms=300 heartbeat_ms=10 \
                     progress_at={PROGRESS_AT}",
                    file.arg()
                ),
            )
        })
        .collect();
    for &consumer in &consumers {
        procs.wait_report(consumer, "PROGRESS", Duration::from_secs(60));
    }
    let status = procs.kill(producer);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", procs.report());
    procs.wait_all(Duration::from_secs(60));

    // What the ring holds: a consumer joining at the cursor starts after
    // the last event fully published.
    let observer = ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new())
        .expect("open the dead producer's ring");
    let next = observer.next_sequence();
    drop(observer);
    assert!(next > PROGRESS_AT as i64, "{next}\n{}", procs.report());
    for &consumer in &consumers {
        let result = procs.result(consumer);
        assert_eq!(result.str("outcome"), "dead", "{}", procs.report());
        assert_eq!(result.num::<u64>("errors"), 0, "{}", procs.report());
        let last_handled: i64 = result.num("last_handled");
        assert_eq!(last_handled + 1, next, "{}", procs.report());
        assert_eq!(
            result.num::<i64>("count"),
            last_handled + 1,
            "{}",
            procs.report()
        );
    }
    assert!(
        file.path().exists(),
        "a killed producer cannot remove its file"
    );
    // `file` removes it.
}

// ---------------------------------------------------------------------------
// 4. Opens and creates that fail, and options at their edges

/// The same layout as `Tick` under another schema name.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OtherName([u64; 8]);

impl ShmEvent for OtherName {
    const SCHEMA_NAME: &'static str = "tickring.test.other";
    const SCHEMA_VERSION: u32 = 1;
}

/// `Tick`'s name, another version.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OtherVersion([u64; 8]);

impl ShmEvent for OtherVersion {
    const SCHEMA_NAME: &'static str = "tickring.test.tick";
    const SCHEMA_VERSION: u32 = 2;
}

/// `Tick`'s name and version, 32 bytes.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OtherSize([u64; 4]);

impl ShmEvent for OtherSize {
    const SCHEMA_NAME: &'static str = "tickring.test.tick";
    const SCHEMA_VERSION: u32 = 1;
}

/// `Tick`'s name, version and size (64 bytes), aligned to 4.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct OtherAlign([u32; 16]);

impl ShmEvent for OtherAlign {
    const SCHEMA_NAME: &'static str = "tickring.test.tick";
    const SCHEMA_VERSION: u32 = 1;
}

fn open_error<E: ShmEvent>(path: &Path, options: &ShmConsumerOptions) -> ShmError {
    match ShmConsumer::<E>::open(path, options) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(error) => error,
    }
}

fn create_error(path: &Path, options: &ShmOptions) -> ShmError {
    ShmProducer::<Tick>::create(path, options).expect_err("created")
}

fn assert_invalid_option(error: ShmError, expected: &str) {
    match error {
        ShmError::InvalidOption { option, .. } if option == expected => {}
        other => panic!("expected InvalidOption {{ option: {expected:?} }}, got {other:?}"),
    }
}

#[test]
fn open_a_missing_file_is_io_not_found() {
    let file = FileGuard::new("missing");
    match open_error::<Tick>(file.path(), &ShmConsumerOptions::new()) {
        ShmError::Io { source, path, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(path, file.path());
        }
        other => panic!("expected Io NotFound, got {other:?}"),
    }
}

#[test]
fn open_with_another_event_type_or_capacity() {
    let file = FileGuard::new("other-type");
    let mut producer =
        ShmProducer::<Tick>::create(file.path(), &ShmOptions::new(16)).expect("create the ring");
    let any = ShmConsumerOptions::new();
    match open_error::<OtherName>(file.path(), &any) {
        ShmError::Schema {
            found_name,
            found_version,
            expected_name,
            expected_version,
        } => {
            assert_eq!(found_name, Tick::SCHEMA_NAME);
            assert_eq!(found_version, 1);
            assert_eq!(expected_name, OtherName::SCHEMA_NAME);
            assert_eq!(expected_version, 1);
        }
        other => panic!("expected Schema, got {other:?}"),
    }
    match open_error::<OtherVersion>(file.path(), &any) {
        ShmError::Schema {
            found_version: 1,
            expected_version: 2,
            ..
        } => {}
        other => panic!("expected Schema (version), got {other:?}"),
    }
    match open_error::<OtherSize>(file.path(), &any) {
        ShmError::EventSize {
            found: 64,
            expected: 32,
        } => {}
        other => panic!("expected EventSize, got {other:?}"),
    }
    match open_error::<OtherAlign>(file.path(), &any) {
        ShmError::EventAlign {
            found: 8,
            expected: 4,
        } => {}
        other => panic!("expected EventAlign, got {other:?}"),
    }
    match open_error::<Tick>(file.path(), &ShmConsumerOptions::new().capacity(8)) {
        ShmError::Capacity {
            found: 16,
            expected: 8,
        } => {}
        other => panic!("expected Capacity, got {other:?}"),
    }
    // The right type and capacity open; none of the refused opens kept an
    // entry.
    let consumer = ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new().capacity(16))
        .expect("open with the right type and capacity");
    assert_eq!(producer.active_consumers(), 1);
    drop(consumer);
    assert_eq!(producer.active_consumers(), 0);
}

#[test]
fn open_a_file_that_is_not_a_sound_ring() {
    let any = ShmConsumerOptions::new();

    // Truncated: a byte short, then to the header alone.
    let truncated = FileGuard::new("truncated");
    let len = closed_ring(truncated.path(), 16);
    for short in [len - 1, 512] {
        std::fs::File::options()
            .write(true)
            .open(truncated.path())
            .and_then(|f| f.set_len(short))
            .expect("truncate");
        match open_error::<Tick>(truncated.path(), &any) {
            ShmError::TooSmall { len: found, needed } => {
                assert_eq!((found, needed), (short, len));
            }
            other => panic!("expected TooSmall for {short} bytes, got {other:?}"),
        }
    }

    // A few bytes: shorter than a header.
    let tiny = FileGuard::new("tiny");
    std::fs::write(tiny.path(), b"tickring").expect("write");
    match open_error::<Tick>(tiny.path(), &any) {
        ShmError::TooSmall { len: 8, .. } => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }

    // An empty file.
    let empty = FileGuard::new("empty");
    std::fs::write(empty.path(), b"").expect("write");
    match open_error::<Tick>(empty.path(), &any) {
        ShmError::TooSmall { len: 0, .. } => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }

    // Zeroed, of a ring's size.
    let zeroed = FileGuard::new("zeroed");
    std::fs::File::create(zeroed.path())
        .and_then(|f| f.set_len(len))
        .expect("create");
    match open_error::<Tick>(zeroed.path(), &any) {
        ShmError::NotInitialized => {}
        other => panic!("expected NotInitialized, got {other:?}"),
    }

    // Another magic (byte 0).
    let magic = FileGuard::new("magic");
    closed_ring(magic.path(), 16);
    let foreign = u64::from_le_bytes(*b"NOTARING");
    write_word(magic.path(), 0, foreign);
    match open_error::<Tick>(magic.path(), &any) {
        ShmError::BadMagic { found } => assert_eq!(found, foreign),
        other => panic!("expected BadMagic, got {other:?}"),
    }

    // Another layout version (byte 8).
    let version = FileGuard::new("layout-version");
    closed_ring(version.path(), 16);
    write_word(version.path(), 8, 99);
    match open_error::<Tick>(version.path(), &any) {
        ShmError::LayoutVersion { found: 99, .. } => {}
        other => panic!("expected LayoutVersion, got {other:?}"),
    }

    // A capacity word (byte 16) that is not a power of two.
    let capacity = FileGuard::new("corrupt-capacity");
    closed_ring(capacity.path(), 16);
    write_word(capacity.path(), 16, 3);
    match open_error::<Tick>(capacity.path(), &any) {
        ShmError::Corrupt {
            field: "capacity",
            value: 3,
        } => {}
        other => panic!("expected Corrupt capacity, got {other:?}"),
    }
}

#[test]
fn open_without_permission() {
    const TEST: &str = "open_without_permission";
    run_role_if_child();
    let file = FileGuard::new("denied");
    let mut producer = ShmProducer::<Tick>::create(file.path(), &ShmOptions::new(16).mode(0o600))
        .expect("create the ring");
    let mode = std::fs::metadata(file.path()).expect("stat").permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);
    // SAFETY: `geteuid` reads this process's effective user id; no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // Root opens anything: the open runs in a child that gives up root.
        let _serial = serial();
        let mut procs = Procs::new(TEST);
        let child = procs.spawn("nobody", format!("role=open_denied path={}", file.arg()));
        procs.wait_all(Duration::from_secs(60));
        assert_eq!(
            procs.result(child).str("error"),
            "PermissionDenied",
            "{}",
            procs.report()
        );
    } else {
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o000))
            .expect("chmod 000");
        match open_error::<Tick>(file.path(), &ShmConsumerOptions::new()) {
            ShmError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied => {}
            other => panic!("expected Io PermissionDenied, got {other:?}"),
        }
    }
    assert_eq!(producer.active_consumers(), 0);
}

#[test]
fn create_on_an_existing_path() {
    let file = FileGuard::new("exists");
    std::fs::write(file.path(), b"someone else's file").expect("write");
    match create_error(file.path(), &ShmOptions::new(16)) {
        ShmError::AlreadyExists { path } => assert_eq!(path, file.path()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(file.path()).expect("read"),
        b"someone else's file",
        "the refused create left the file alone"
    );
    // A live ring's path, too.
    let ring = FileGuard::new("exists-ring");
    let _producer = ShmProducer::<Tick>::create(ring.path(), &ShmOptions::new(16)).expect("create");
    assert!(matches!(
        create_error(ring.path(), &ShmOptions::new(16)),
        ShmError::AlreadyExists { .. }
    ));
    // `replace` takes the path over.
    let replaced = ShmProducer::<Tick>::create(file.path(), &ShmOptions::new(16).replace(true))
        .expect("create with replace");
    ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new().capacity(16))
        .expect("open the replacing ring");
    drop(replaced);
}

#[test]
fn invalid_options_are_refused() {
    let file = FileGuard::new("invalid-options");
    for capacity in [0, 3, 1000, MAX_SHM_CAPACITY * 2] {
        assert_invalid_option(
            create_error(file.path(), &ShmOptions::new(capacity)),
            "capacity",
        );
    }
    for max_consumers in [0, MAX_CONSUMERS + 1] {
        assert_invalid_option(
            create_error(
                file.path(),
                &ShmOptions::new(16).max_consumers(max_consumers),
            ),
            "max_consumers",
        );
    }
    for timeout in [Duration::ZERO, Duration::from_micros(1_999)] {
        assert_invalid_option(
            create_error(file.path(), &ShmOptions::new(16).liveness_timeout(timeout)),
            "liveness_timeout",
        );
    }
    assert!(!file.path().exists(), "a refused create made no file");

    let _producer = ShmProducer::<Tick>::create(file.path(), &ShmOptions::new(16)).expect("create");
    let cases = [
        (
            ShmConsumerOptions::new().max_batch_size(0),
            "max_batch_size",
        ),
        (
            ShmConsumerOptions::new().join_at(JoinAt::Sequence(-1)),
            "join_at",
        ),
        (
            ShmConsumerOptions::new().join_at(JoinAt::Sequence(i64::MIN)),
            "join_at",
        ),
        (
            ShmConsumerOptions::new().liveness_timeout(Duration::ZERO),
            "liveness_timeout",
        ),
    ];
    for (options, option) in cases {
        assert_invalid_option(open_error::<Tick>(file.path(), &options), option);
    }
}

#[test]
fn full_consumer_table() {
    let file = FileGuard::new("table-full");
    let mut producer =
        ShmProducer::<Tick>::create(file.path(), &ShmOptions::new(16).max_consumers(1))
            .expect("create");
    let first =
        ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new()).expect("first consumer");
    match open_error::<Tick>(file.path(), &ShmConsumerOptions::new()) {
        ShmError::TableFull { max_consumers: 1 } => {}
        other => panic!("expected TableFull, got {other:?}"),
    }
    assert_eq!(producer.active_consumers(), 1);
    // The entry is free again once the first leaves.
    drop(first);
    let _second =
        ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new()).expect("rejoin");
    assert_eq!(producer.active_consumers(), 1);
}

/// Drains `consumer` through `poll` until the ring is closed and drained
/// (bounded), checking every event.
fn poll_until_closed(consumer: &mut ShmConsumer<Tick>, checker: &mut Checker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.poll(checker).expect("poll") {
            ShmPollState::Closed => return,
            ShmPollState::Handled(_) => {}
            ShmPollState::Idle => {
                assert!(Instant::now() < deadline, "the ring never reported Closed");
                thread::yield_now();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn option_edges_work_end_to_end() {
    // Capacity 1, batch size 1: every publish waits for the consumer.
    let file = FileGuard::new("capacity-1");
    let mut producer = ShmProducer::<Tick>::create(
        file.path(),
        &ShmOptions::new(1)
            .max_consumers(1)
            .liveness_timeout(Duration::from_millis(2)),
    )
    .expect("create a ring of 1");
    let mut consumer = ShmConsumer::<Tick>::open(
        file.path(),
        &ShmConsumerOptions::new()
            .capacity(1)
            .max_batch_size(1)
            .heartbeat_interval(Duration::from_millis(1)),
    )
    .expect("open a ring of 1");
    let mut checker = Checker::new(0);
    for sequence in 0..100 {
        assert_eq!(
            producer.try_publish(|tick| *tick = Tick::for_sequence(sequence)),
            Ok(sequence)
        );
        assert_eq!(
            producer.try_publish(|tick| *tick = Tick::for_sequence(sequence + 1)),
            Err(TryPublishError::Full),
            "a ring of one holds one event"
        );
        assert_eq!(consumer.poll(&mut checker), Ok(ShmPollState::Handled(1)));
    }
    assert_eq!(producer.evictions(), 0);
    let report = producer.close();
    assert_eq!(report.published, 100);
    poll_until_closed(&mut consumer, &mut checker);
    assert_eq!((checker.count, checker.errors), (100, 0));
    assert_eq!(consumer.events_handled(), 100);

    // The largest table, the shortest timeouts and intervals (a zero
    // interval is taken as 1 ms), the largest batch. (The largest capacity,
    // 2^30 slots, would need a file of 128 GiB.)
    let big = FileGuard::new("max-consumers");
    let mut producer = ShmProducer::<Tick>::create(
        big.path(),
        &ShmOptions::new(2)
            .max_consumers(MAX_CONSUMERS)
            .liveness_timeout(Duration::from_secs(5))
            .heartbeat_interval(Duration::ZERO),
    )
    .expect("create with MAX_CONSUMERS entries");
    let mut consumer = ShmConsumer::<Tick>::open(
        big.path(),
        &ShmConsumerOptions::new()
            .liveness_timeout(Duration::from_millis(2))
            .heartbeat_interval(Duration::from_millis(1))
            .max_batch_size(usize::MAX),
    )
    .expect("open");
    let mut checker = Checker::new(0);
    for sequence in 0..10 {
        producer
            .publish(|tick| *tick = Tick::for_sequence(sequence))
            .expect("publish");
        let deadline = Instant::now() + Duration::from_secs(30);
        while checker.next <= sequence {
            match consumer.poll(&mut checker).expect("poll") {
                ShmPollState::Handled(_) => {}
                ShmPollState::Idle if Instant::now() < deadline => thread::yield_now(),
                other => panic!("{other:?} before event {sequence}"),
            }
        }
    }
    producer.close();
    poll_until_closed(&mut consumer, &mut checker);
    assert_eq!((checker.count, checker.errors), (10, 0));
}

// ---------------------------------------------------------------------------
// 5. Late joiners

/// Opens with `options` on a thread while this thread keeps calling
/// `try_publish` on a full ring, which refreshes the producer's gate and so
/// acknowledges an explicit join; nothing is published (the ring stays
/// full).
fn open_while_the_producer_claims(
    producer: &mut ShmProducer<Tick>,
    path: &Path,
    options: ShmConsumerOptions,
) -> Result<ShmConsumer<Tick>, ShmError> {
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let opener = scope.spawn(|| {
            let result = ShmConsumer::<Tick>::open(path, &options);
            done.store(true, Ordering::Release);
            result
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the join never completed");
            assert_eq!(
                producer.try_publish(|_| unreachable!("the ring is full")),
                Err(TryPublishError::Full)
            );
            thread::sleep(Duration::from_micros(200));
        }
        opener.join().expect("the opener panicked")
    })
}

#[test]
fn late_joiner_at_cursor_and_at_sequence() {
    const CAPACITY: i64 = 16;
    let file = FileGuard::new("late-joiner");
    let mut producer = ShmProducer::<Tick>::create(
        file.path(),
        &ShmOptions::new(CAPACITY as usize).full_ring_wait(FullRingWait::Yield),
    )
    .expect("create");
    let publish = |producer: &mut ShmProducer<Tick>, range: std::ops::Range<i64>| {
        for sequence in range {
            assert_eq!(
                producer.publish(|tick| *tick = Tick::for_sequence(sequence)),
                Ok(sequence)
            );
        }
    };
    // An explicit join waits for the producer's next claim: with none
    // within the join timeout, it fails and leaves the table.
    match ShmConsumer::<Tick>::open(
        file.path(),
        &ShmConsumerOptions::new()
            .join_at(JoinAt::Sequence(0))
            .join_timeout(Duration::from_millis(20)),
    ) {
        Err(ShmError::JoinTimeout) => {}
        other => panic!("expected JoinTimeout, got {other:?}"),
    }
    assert_eq!(producer.active_consumers(), 0);

    // Nobody gates: 0..20 are published, the ring holds 4..=19.
    publish(&mut producer, 0..20);

    // At the cursor: starts after everything published before it joined.
    let mut cursor = ShmConsumer::<Tick>::open(file.path(), &ShmConsumerOptions::new())
        .expect("join at the cursor");
    assert_eq!(cursor.next_sequence(), 20);
    // It gates now: 20..36 fill the ring (it holds 20..=35) and no more fits.
    publish(&mut producer, 20..20 + CAPACITY);
    assert_eq!(
        producer.try_publish(|_| unreachable!("the ring is full")),
        Err(TryPublishError::Full)
    );

    // At a sequence the ring still holds.
    let options = ShmConsumerOptions::new().join_timeout(Duration::from_secs(20));
    let mut at_24 = open_while_the_producer_claims(
        &mut producer,
        file.path(),
        options.clone().join_at(JoinAt::Sequence(24)),
    )
    .expect("join at 24");
    assert_eq!(at_24.next_sequence(), 24);
    // At the next sequence to publish, and past it.
    let mut at_36 = open_while_the_producer_claims(
        &mut producer,
        file.path(),
        options.clone().join_at(JoinAt::Sequence(36)),
    )
    .expect("join at 36");
    let mut at_40 = open_while_the_producer_claims(
        &mut producer,
        file.path(),
        options.clone().join_at(JoinAt::Sequence(40)),
    )
    .expect("join at 40");
    // At a sequence already overwritten.
    for requested in [0, 5, 19] {
        match open_while_the_producer_claims(
            &mut producer,
            file.path(),
            options.clone().join_at(JoinAt::Sequence(requested)),
        ) {
            Err(ShmError::NotInRing {
                requested: found,
                oldest,
            }) => assert_eq!((found, oldest), (requested, 20)),
            other => panic!("expected NotInRing for {requested}, got {other:?}"),
        }
    }
    assert_eq!(producer.active_consumers(), 4, "the refused joins left");

    // The rest on threads: the producer publishes 36..200 and closes, each
    // consumer runs until drained and checks what it saw.
    const TOTAL: i64 = 200;
    let results = thread::scope(|scope| {
        let joiners: Vec<_> = [
            (&mut cursor, 20),
            (&mut at_24, 24),
            (&mut at_36, 36),
            (&mut at_40, 40),
        ]
        .into_iter()
        .map(|(consumer, first)| {
            scope.spawn(move || {
                let mut checker = Checker::new(first);
                let handled = consumer.run(&mut checker, &Yielding::new());
                (first, handled, checker)
            })
        })
        .collect();
        publish(&mut producer, 20 + CAPACITY..TOTAL);
        let report = producer.close();
        assert_eq!(report.published, TOTAL as u64);
        assert_eq!(report.evictions, 0);
        joiners
            .into_iter()
            .map(|joiner| joiner.join().expect("a consumer thread panicked"))
            .collect::<Vec<_>>()
    });
    for (first, handled, checker) in results {
        assert_eq!(
            (handled, checker.errors, checker.first_error.clone()),
            (Ok((TOTAL - first) as u64), 0, None),
            "the consumer that joined at {first}"
        );
        assert_eq!(checker.next, TOTAL);
    }
}
