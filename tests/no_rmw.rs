//! Contract line 5: no atomic read-modify-write on the single-producer path.
//!
//! The single producer's publish path is made of the code in these files:
//! the trait's default methods (`event_producer.rs`), the producer's claim
//! and publish (`producer.rs`), its sequencer (`sequencer/single.rs`), the
//! slot stamps (`ring_buffer.rs`) and the gating sequences it reads
//! (`sequence.rs`). A read-modify-write there (`fetch_*`, `swap`,
//! `compare_exchange*`) would add a locked instruction per event. This test
//! reads the sources and fails naming the line, so the promise cannot
//! silently rot. (The halt flag, the wait strategies and shutdown live
//! elsewhere: the publish path only loads the first and `Blocking`'s signal
//! is a fence and a load, which `tests/no_alloc.rs` and the loom model of
//! `Blocking` cover.)

const PATH_FILES: [(&str, &str); 5] = [
    (
        "src/event_producer.rs",
        include_str!("../src/event_producer.rs"),
    ),
    ("src/producer.rs", include_str!("../src/producer.rs")),
    (
        "src/sequencer/single.rs",
        include_str!("../src/sequencer/single.rs"),
    ),
    ("src/ring_buffer.rs", include_str!("../src/ring_buffer.rs")),
    ("src/sequence.rs", include_str!("../src/sequence.rs")),
];

const READ_MODIFY_WRITE: [&str; 5] = [
    ".fetch_",
    ".swap(",
    ".compare_exchange(",
    ".compare_exchange_weak(",
    ".compare_and_swap(",
];

/// The code of a line, without its `//` comment.
fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Every line of `source` that calls a read-modify-write, as `file:line: code`.
fn read_modify_writes(file: &str, source: &str) -> Vec<String> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = code_of(line);
            READ_MODIFY_WRITE.iter().any(|call| code.contains(call))
        })
        .map(|(index, line)| format!("{file}:{}: {}", index + 1, line.trim()))
        .collect()
}

#[test]
fn the_single_producer_path_has_no_read_modify_write() {
    let found: Vec<String> = PATH_FILES
        .iter()
        .flat_map(|(file, source)| read_modify_writes(file, source))
        .collect();
    assert!(
        found.is_empty(),
        "contract line 5 (no atomic read-modify-write on the single-producer path) is broken by:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_a_read_modify_write_where_there_is_one() {
    // The scan must be able to fail: the multi-producer's claim is a
    // `fetch_add`, and a commented-out call is not code.
    let multi = include_str!("../src/sequencer/multi.rs");
    assert!(!read_modify_writes("src/sequencer/multi.rs", multi).is_empty());
    assert!(read_modify_writes("x", "// counter.fetch_add(1, Relaxed)").is_empty());
    assert_eq!(
        read_modify_writes("x", "let _ = a.swap(1, Relaxed); // why").len(),
        1
    );
}
