//! Go `time.ParseDuration` syntax, as used by OpenFaaS labels such as
//! `com.openfaas.scale.zero-duration: "5m"`.

use std::time::Duration;

use crate::Error;

/// Parses a Go duration: a sequence of decimal numbers with units, e.g. `300ms`,
/// `1.5s`, `5m`, `1h30m`. Units: `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`.
/// A bare `0` is accepted; negative durations are rejected because nothing in the
/// gateway can wait a negative time.
pub fn parse_go_duration(input: &str) -> Result<Duration, Error> {
    let fail = |reason| Error::Duration {
        input: input.to_owned(),
        reason,
    };
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if rest.starts_with('-') {
        return Err(fail("negative durations are not allowed"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail("empty"));
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(fail("expected a number"));
        }
        let value: f64 = number.parse().map_err(|_| fail("expected a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(fail("missing unit")),
            _ => return Err(fail("unknown unit (use ns, us, ms, s, m or h)")),
        };
        total_nanos += value * nanos_per_unit;
        rest = tail;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(fail("too large"));
    }
    // Go truncates fractional nanoseconds as well.
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats a duration the way Go prints it (`1h30m0s`, `250ms`), for logs.
pub fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        return if nanos % 1_000_000 == 0 {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let millis = duration.subsec_millis();
    let seconds = if millis == 0 {
        format!("{seconds}s")
    } else {
        let fraction = format!("{millis:03}");
        format!("{seconds}.{}s", fraction.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_go_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_go_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_go_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("7us").unwrap(), Duration::from_micros(7));
        assert_eq!(parse_go_duration("7µs").unwrap(), Duration::from_micros(7));
        assert_eq!(parse_go_duration("9ns").unwrap(), Duration::from_nanos(9));
    }

    #[test]
    fn parses_compound_fractional_and_zero() {
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("1m0.5s").unwrap(),
            Duration::from_millis(60_500)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_go_duration(".5s").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("+0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", "5", "m", "5x", "1.2.3s", "-5m", "5m3", "s5", ".s", "1d"] {
            let err = parse_go_duration(bad).expect_err(bad);
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "error for {bad:?} should quote it: {err}"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
