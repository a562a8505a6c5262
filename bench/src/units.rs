//! The one number formatter: latencies, rates, ratios and grouped counts.

/// `1234567` as `1,234,567`.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in nanoseconds, in the unit that keeps 3 significant digits:
/// `85 ns`, `1.23 µs`, `45.6 ms`.
pub fn ns(nanos: f64) -> String {
    scaled(nanos, &[(1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns")])
}

/// Events per second: `12.3 M/s`.
pub fn rate(per_second: f64) -> String {
    scaled(
        per_second,
        &[(1e9, "G/s"), (1e6, "M/s"), (1e3, "k/s"), (1.0, "/s")],
    )
}

/// A ratio: `1.23x`; `-` when there is none (NaN).
pub fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}x")
    } else {
        "-".to_owned()
    }
}

fn scaled(value: f64, units: &[(f64, &str)]) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let (scale, unit) = units
        .iter()
        .find(|(scale, _)| value.abs() >= *scale)
        .unwrap_or(&units[units.len() - 1]);
    let scaled = value / scale;
    let decimals = if scaled >= 100.0 || *scale == 1.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.decimals$} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(ns(85.0), "85 ns");
        assert_eq!(ns(1_234.0), "1.23 µs");
        assert_eq!(rate(12_345_678.0), "12.3 M/s");
        assert_eq!(ratio(f64::NAN), "-");
        assert_eq!(ratio(1.5), "1.50x");
    }
}
