//! Paired-round statistics: every system runs once per round, in an order
//! that rotates, and a ratio is taken within a round before the median, so
//! drift of a shared machine hits every system alike.

/// The median (NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// The median over rounds of `values[round] / baseline[round]`.
pub fn paired_ratio(values: &[f64], baseline: &[f64]) -> f64 {
    let ratios: Vec<f64> = values
        .iter()
        .zip(baseline)
        .map(|(value, base)| value / base)
        .collect();
    median(&ratios)
}

/// (max - min) / median: how much the rounds disagree.
pub fn spread(values: &[f64]) -> f64 {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    (max - min) / median(values)
}

/// Runs `run(round, system)` for `rounds` rounds over `systems` systems, the
/// order rotating by one each round; returns `results[system][round]`.
/// `progress` is told which run comes next (between runs, never during one).
pub fn rounds<R>(
    rounds: usize,
    systems: usize,
    mut progress: impl FnMut(usize, usize),
    mut run: impl FnMut(usize, usize) -> R,
) -> Vec<Vec<R>> {
    let mut results: Vec<Vec<R>> = (0..systems).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for offset in 0..systems {
            let system = (round + offset) % systems;
            progress(round, system);
            results[system].push(run(round, system));
        }
    }
    results
}

/// Prints rates (events/s) measured in paired rounds, `rates[row][round]`:
/// per row the median, min, max, spread, and the paired ratios to
/// `rates[baseline]` and, if given, to `rates[floor]`.
pub fn print_rates(
    title: &str,
    names: &[&str],
    rates: &[Vec<f64>],
    baseline: usize,
    floor: Option<usize>,
) {
    println!(
        "\n{title}\n{:<28}{:>12}{:>12}{:>12}{:>8}{:>10}{:>10}",
        "", "median", "min", "max", "spread", "/base", "/floor"
    );
    for (name, rate) in names.iter().zip(rates) {
        let (min, max) = rate.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        let spread = format!("{:.0}%", 100.0 * spread(rate));
        let to_floor = floor.map_or(f64::NAN, |floor| paired_ratio(rate, &rates[floor]));
        let cells = [median(rate), min, max].map(crate::units::rate);
        let ratios = [paired_ratio(rate, &rates[baseline]), to_floor].map(crate::units::ratio);
        println!(
            "{name:<28}{:>12}{:>12}{:>12}{spread:>8}{:>10}{:>10}",
            cells[0], cells[1], cells[2], ratios[0], ratios[1]
        );
    }
}

/// The cache-line floor (one way, ns) below which the two vCPUs count as
/// *near*: on the build machine the floor sits at ~35-80 ns in one
/// placement and ~190-220 ns in the other (BENCHMARKS.md, Machine), so 100
/// ns separates the two with room on either side.
pub const NEAR_FLOOR_NS: f64 = 100.0;

/// The placement word for a floor measured before and after a run: `near`
/// or `far` by the mean, with `moved` added when the two disagree.
pub fn placement_word(before_ns: f64, after_ns: f64) -> &'static str {
    let near = |floor: f64| floor < NEAR_FLOOR_NS;
    match (near(before_ns), near(after_ns)) {
        (true, true) => "near",
        (false, false) => "far",
        _ if near((before_ns + after_ns) / 2.0) => "near, moved",
        _ => "far, moved",
    }
}

/// A target of the form "`ratio` ≥ `target`", judged on a paired median.
pub fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio >= target {
        "met"
    } else {
        "not met"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(paired_ratio(&[2.0, 9.0, 4.0], &[1.0, 3.0, 4.0]), 2.0);
        let order = rounds(2, 3, |_, _| {}, |round, system| (round, system));
        assert_eq!(order[1], vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn placements_and_verdicts() {
        assert_eq!(placement_word(40.0, 70.0), "near");
        assert_eq!(placement_word(200.0, 150.0), "far");
        assert_eq!(placement_word(40.0, 120.0), "near, moved");
        assert_eq!(placement_word(90.0, 220.0), "far, moved");
        assert_eq!((verdict(1.2, 1.2), verdict(1.19, 1.2)), ("met", "not met"));
        assert_eq!(verdict(f64::NAN, 1.2), "not met");
    }
}
