//! Throughput of tickring beside its peers, one criterion group per shape:
//! the `disruptor` crate, crossbeam-channel, rtrb and the floor ring, each
//! where it can express the shape (an SPSC queue has no 3-producer shape).
//!
//! ```text
//! cargo bench --bench throughput                  # every group, minutes on 2 cores
//! cargo bench --bench throughput -- unicast_1p1c  # one group (a criterion filter)
//! cargo bench --bench throughput -- --test        # each bench once, as a smoke test (no rounds)
//! ```
//!
//! | group | shape | ring |
//! |---|---|---|
//! | `unicast_1p1c` | P → C; C sums | 65,536 |
//! | `pipeline_1p3c` | P → C1 → C2 → C3; C1 and C2 add one each, C3 sums | 8,192 |
//! | `multicast_1p3c` | P → C1, C2, C3, each summing every event | 8,192 |
//! | `sequencer_3p1c` | P1, P2, P3 → C; C sums | 65,536 |
//!
//! The shapes, the peers and the placement are `tickring_bench`'s (the same
//! code the latency and hot-path tools run). Each bench builds its pipeline
//! once and reuses it for every sample; a sample publishes its events from
//! the producer thread(s), waits until the checked consumers have them, and
//! panics if a consumer's sum is wrong. With a core per thread everything is
//! pinned and busy-spins (the bench id says `spin`); otherwise every system
//! spins briefly, then yields (`yield`). Throughput is in events per second.
//! Criterion runs one bench after another, and on a shared machine a shape's
//! speed drifts between groups; so after criterion, every shape runs again in
//! paired rounds (every system once per round, fresh, in a rotating order)
//! and a last table per shape gives the median rate and the paired ratios to
//! tickring and the floor ring. Compare systems with that table.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickring::FullRingWait;
use tickring_bench::peers::System;
use tickring_bench::place::{Placement, Waiting};
use tickring_bench::scenarios::{self, Contender, Event, Rig, Shape, TickOptions};
use tickring_bench::stats;

/// Rounds of the paired table, and events per measured sample.
const ROUNDS: usize = 5;
const ROUND_EVENTS: u64 = 1 << 21;

/// Who runs `shape` here: tickring (with `batch_publish(10)` where
/// producers can batch, and, when pinned, its default full-ring policy),
/// then every peer that can express the shape.
fn contenders(shape: Shape, placement: &Placement) -> Vec<Contender> {
    let tickring = TickOptions::default();
    let mut contenders = vec![("tickring".to_owned(), System::Tickring, tickring)];
    if matches!(shape, Shape::Unicast | Shape::Sequencer) {
        let batch10 = TickOptions {
            batch: 10,
            ..tickring
        };
        contenders.push(("tickring_batch10".to_owned(), System::Tickring, batch10));
    }
    if shape == Shape::Unicast && placement.waiting() == Waiting::Spin {
        let yield_if_full = TickOptions {
            full_ring: Some(FullRingWait::Yield),
            ..tickring
        };
        contenders.push((
            "tickring_yield_if_full".to_owned(),
            System::Tickring,
            yield_if_full,
        ));
    }
    let peers = System::ALL
        .into_iter()
        .filter(|system| *system != System::Tickring);
    contenders.extend(
        peers
            .filter(|peer| shape.supports(*peer))
            .map(|peer| (peer.slug().to_owned(), peer, tickring)),
    );
    contenders
}

fn shapes(c: &mut Criterion) {
    for shape in Shape::ALL {
        let placement = Placement::for_threads(shape.threads());
        let waiting = format!("{:?}", placement.waiting()).to_lowercase();
        let mut group = c.benchmark_group(shape.name());
        group.throughput(Throughput::Elements(1));
        for (name, system, options) in contenders(shape, &placement) {
            let mut rig =
                Rig::new::<Event>(system, shape, &placement, options).expect("a supported shape");
            group.bench_function(format!("{name}/{waiting}"), |bencher| {
                bencher.iter_custom(|events| rig.run(events))
            });
        }
        group.finish();
    }
}

/// After criterion's groups (not in `--test` or `--list` runs): every shape
/// again in paired rounds, the table to compare systems by on a machine
/// whose speed drifts between criterion's groups.
fn paired_rounds(_: &mut Criterion) {
    if std::env::args().any(|arg| arg == "--test" || arg == "--list") {
        return;
    }
    for shape in Shape::ALL {
        let placement = Placement::for_threads(shape.threads());
        let contenders = contenders(shape, &placement);
        let rates = scenarios::paired_throughput::<Event>(
            shape,
            &placement,
            &contenders,
            ROUNDS,
            ROUND_EVENTS,
        )
        .rates;
        let names: Vec<&str> = contenders.iter().map(|(name, ..)| name.as_str()).collect();
        let floor = contenders
            .iter()
            .position(|(_, system, _)| *system == System::Floor);
        let title = format!(
            "{}: events/s over {ROUNDS} paired rounds; {}",
            shape.name(),
            placement.describe()
        );
        stats::print_rates(&title, &names, &rates, 0, floor);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = shapes, paired_rounds
}
criterion_main!(benches);
