//! HdrHistograms of latency (in ns): the percentile table, `.hgrm` files and
//! an SVG percentile plot.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::stats::{median, paired_ratio};
use crate::units;

/// The highest latency told apart: 10 s (longer ones saturate).
pub const CEILING_NS: u64 = 10_000_000_000;

/// A histogram of 1 ns to 10 s at 3 significant digits, every page of its
/// counts written once so that recording never page-faults or allocates.
pub fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, CEILING_NS, 3).expect("valid bounds");
    histogram.record(1).expect("in range");
    histogram.reset();
    histogram
}

/// The table's columns: the quantiles, then the largest value.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

/// One system's histograms, one per round.
#[derive(Debug)]
pub struct Rounds<'a> {
    pub name: &'a str,
    pub rounds: &'a [Histogram<u64>],
}

impl<'a> Rounds<'a> {
    /// One row per name, from `histograms[system][round]`.
    pub fn rows(names: &[&'a str], histograms: &'a [Vec<Histogram<u64>>]) -> Vec<Self> {
        let rows = names.iter().zip(histograms);
        rows.map(|(name, rounds)| Rounds { name, rounds }).collect()
    }

    /// The value at `quantile` in each round (1.0: the largest).
    pub fn at(&self, quantile: f64) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|histogram| histogram.value_at_quantile(quantile) as f64)
            .collect()
    }
}

/// The header of a percentile table: a name column, the quantiles, max.
fn header(extra: &[&str]) -> String {
    let mut header = format!("{:<24}", "");
    for label in QUANTILES.iter().map(|(_, label)| *label).chain(["max"]) {
        write!(header, "{label:>10}").unwrap();
    }
    for label in extra {
        write!(header, "{label:>12}").unwrap();
    }
    format!("{header}\n{}", "-".repeat(header.chars().count()))
}

/// A row of a percentile table: `at(quantile)` for each quantile, then
/// `at(1.0)` (the largest value).
fn cells(name: &str, at: impl Fn(f64) -> f64) -> String {
    let mut line = format!("{name:<24}");
    for quantile in QUANTILES.iter().map(|(quantile, _)| *quantile).chain([1.0]) {
        write!(line, "{:>10}", units::ns(at(quantile))).unwrap();
    }
    line
}

/// Prints the percentiles of each histogram, one row each.
pub fn print_percentiles(title: &str, rows: &[(&str, &Histogram<u64>)]) {
    println!("\n{title}\n{}", header(&[]));
    for (name, histogram) in rows {
        println!(
            "{}",
            cells(name, |quantile| histogram.value_at_quantile(quantile)
                as f64)
        );
    }
}

/// Prints, per system, the median over rounds of each round's percentiles
/// (and the largest value of any round), then the paired p50 and p99
/// ratios to `rows[baseline]` (and p50 to `rows[floor]`, if given).
pub fn print_table(title: &str, rows: &[Rounds<'_>], baseline: usize, floor: Option<usize>) {
    let extra: &[&str] = if floor.is_some() {
        &["p50/base", "p99/base", "p50/floor"]
    } else {
        &["p50/base", "p99/base"]
    };
    println!("\n{title}\n{}", header(extra));
    for row in rows {
        let mut line = cells(row.name, |quantile| match quantile {
            1.0 => row.at(1.0).into_iter().fold(0.0, f64::max),
            quantile => median(&row.at(quantile)),
        });
        let mut ratios = vec![(0.5, baseline), (0.99, baseline)];
        ratios.extend(floor.map(|floor| (0.5, floor)));
        for (quantile, base) in ratios {
            let ratio = paired_ratio(&row.at(quantile), &rows[base].at(quantile));
            write!(line, "{:>12}", units::ratio(ratio)).unwrap();
        }
        println!("{line}");
    }
}

/// The HdrHistogram percentile-distribution text (`.hgrm`), values in µs,
/// as HdrHistogram's plotter reads it.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0;
    for step in histogram.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let inverse = if quantile < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - quantile))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{:12.3} {:2.12} {:10} {inverse}",
            step.value_iterated_to() as f64 / 1e3,
            quantile,
            total
        )
        .unwrap();
    }
    let micros = |nanos: f64| nanos / 1e3;
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]",
        micros(histogram.mean()),
        micros(histogram.stdev()),
        micros(histogram.max() as f64),
        histogram.len()
    )
    .unwrap();
    out
}

/// Writes an SVG plot of each histogram's latency (log scale, µs) against
/// its percentile (on the usual `1/(1-p)` log axis) to `path`.
pub fn write_plot(
    path: &Path,
    title: &str,
    series: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    const NINES: f64 = 5.0; // up to p99.999
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, histogram)| {
            (0..=(NINES * 10.0) as u32)
                .map(|tenth| {
                    let x = 10f64.powf(f64::from(tenth) / 10.0);
                    let value = histogram.value_at_quantile(1.0 - 1.0 / x).max(1);
                    (x, value as f64 / 1e3)
                })
                .collect()
        })
        .collect();
    let (low, high) = points
        .iter()
        .flatten()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (1f64..10f64.powf(NINES)).log_scale(),
                (low * 0.8..high * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (µs)")
            .x_label_formatter(&|x| {
                let percent = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
                format!("{}%", percent.trim_end_matches('0').trim_end_matches('.'))
            })
            .draw()?;
        for (index, ((name, _), line)) in series.iter().zip(&points).enumerate() {
            let colour = Palette99::pick(index).stroke_width(2);
            chart
                .draw_series(LineSeries::new(line.iter().copied(), colour))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| format!("{}: {error}", path.display()))
}
