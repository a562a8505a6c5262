//! A producer on the main thread that pins itself before `build()` can still
//! pin its handlers elsewhere: `allowed_cores()` is the process's mask as it
//! started, not the main thread's mask now. Runs without the test harness
//! (`harness = false`), so this is the process's real main thread.

use std::time::{Duration, Instant};

use tickring::{allowed_cores, build_single_producer, pin_current_thread, EventProducer, Yielding};

fn main() {
    let allowed = allowed_cores();
    println!("allowed cores at start: {allowed:?}");
    if allowed.len() < 2 {
        println!("one allowed core: nothing to check");
        return;
    }
    pin_current_thread(allowed[0]).expect("the main thread pins itself");
    assert_eq!(
        allowed_cores(),
        allowed,
        "pinning the main thread must not shrink the process's allowed set"
    );
    let mut producer = build_single_producer(8, || 0u64, Yielding::new())
        .pin_at_core(allowed[1])
        .handle_events_with(|_: &u64, _, _| {})
        .build()
        .expect("a handler pinned to another allowed core builds");
    let deadline = Instant::now() + Duration::from_secs(30);
    for value in 0..100 {
        producer.publish(|event| *event = value).expect("publish");
        assert!(Instant::now() < deadline, "publishing hangs");
    }
    let report = producer.shutdown();
    assert_eq!(report.handlers[0].events_handled, 100);
    // And the main thread may move to another allowed core.
    pin_current_thread(allowed[1]).expect("the main thread moves");
    println!("ok");
}
