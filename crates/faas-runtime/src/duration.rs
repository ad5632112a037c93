//! Durations written the way of-watchdog reads them.
//!
//! of-watchdog's `parseIntOrDurationValue` first tries `strconv.Atoi` (a non-negative whole number
//! means seconds), then Go's `time.ParseDuration`. [`parse_go_duration`] accepts exactly the same
//! texts, except that it reports errors instead of silently falling back to a default, and rejects
//! negative durations (a timeout cannot be negative).

use std::time::Duration;

use crate::Error;

/// The largest duration Go can represent: `math.MaxInt64` nanoseconds (about 292 years).
const MAX_NANOS: u64 = i64::MAX as u64;

/// Go's internal overflow bound for a single unsigned accumulator (`1 << 63`).
const ACCUMULATOR_LIMIT: u64 = 1 << 63;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Parses a watchdog-style duration: a whole number of seconds (`"30"`, `"+5"`) or a Go duration
/// (`"500ms"`, `"10s"`, `"1m5s"`, `"1.5h"`, `"0"`).
///
/// Units are `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m` and `h`; each number may carry a decimal
/// fraction. Negative values and values beyond Go's range (about 292 years) are errors.
///
/// # Errors
/// [`Error::InvalidDuration`] naming the rejected text and the reason.
pub fn parse_go_duration(value: &str) -> Result<Duration, Error> {
    parse(value).map_err(|reason| Error::InvalidDuration {
        value: value.to_owned(),
        reason,
    })
}

/// [`parse_go_duration`] with the reason alone as the error, for callers that wrap it themselves.
pub(crate) fn parse(value: &str) -> Result<Duration, String> {
    if let Some(seconds) = whole_seconds(value) {
        return seconds_to_duration(seconds);
    }
    parse_go(value)
}

/// Mirrors Go's `strconv.Atoi(val)` succeeding with a non-negative result.
fn whole_seconds(value: &str) -> Option<u64> {
    if let Some(digits) = value.strip_prefix('-') {
        // `Atoi("-0")` is 0, which the watchdog takes as zero seconds.
        return (!digits.is_empty() && digits.bytes().all(|b| b == b'0')).then_some(0);
    }
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Out-of-range numbers fail `Atoi` too and fall through to `ParseDuration`, which then reports
    // the overflow (as it would in Go).
    digits.parse::<u64>().ok().filter(|n| *n <= MAX_NANOS)
}

fn seconds_to_duration(seconds: u64) -> Result<Duration, String> {
    match seconds.checked_mul(NANOS_PER_SECOND) {
        Some(nanos) if nanos <= MAX_NANOS => Ok(Duration::from_secs(seconds)),
        _ => Err("longer than the largest supported duration (about 292 years)".to_owned()),
    }
}

/// A port of Go's `time.ParseDuration` (Go 1.22+), restricted to non-negative results.
fn parse_go(original: &str) -> Result<Duration, String> {
    let mut rest = original;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty; expected a number of seconds or a Go duration such as 30s".to_owned());
    }

    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(format!("expected a number at {rest:?}"));
        }

        let (whole, after_whole) = leading_int(rest)?;
        let had_whole = after_whole.len() != rest.len();
        rest = after_whole;

        let mut fraction = 0_u64;
        let mut scale = 1_f64;
        let mut had_fraction = false;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let (digits, digits_scale, after_fraction) = leading_fraction(after_dot);
            had_fraction = after_fraction.len() != after_dot.len();
            fraction = digits;
            scale = digits_scale;
            rest = after_fraction;
        }
        if !had_whole && !had_fraction {
            return Err("a number needs at least one digit".to_owned());
        }

        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit_text, after_unit) = rest.split_at(unit_end);
        rest = after_unit;
        if unit_text.is_empty() {
            return Err("missing unit (use ns, us, ms, s, m or h)".to_owned());
        }
        let unit = unit_nanos(unit_text)
            .ok_or_else(|| format!("unknown unit {unit_text:?} (use ns, us, ms, s, m or h)"))?;

        if whole > ACCUMULATOR_LIMIT / unit {
            return Err(too_long());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // Go computes the fractional part in float64 and truncates; so do we, to agree on
            // every input. Truncation towards zero is the intended `as` behaviour here.
            let fractional_nanos = (fraction as f64 * (unit as f64 / scale)) as u64;
            value = value.checked_add(fractional_nanos).ok_or_else(too_long)?;
            if value > ACCUMULATOR_LIMIT {
                return Err(too_long());
            }
        }
        total = total.checked_add(value).ok_or_else(too_long)?;
        if total > ACCUMULATOR_LIMIT {
            return Err(too_long());
        }
    }

    if negative {
        return if total == 0 {
            Ok(Duration::ZERO)
        } else {
            Err("negative durations are not allowed".to_owned())
        };
    }
    if total > MAX_NANOS {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(total))
}

fn too_long() -> String {
    "longer than the largest supported duration (about 292 years)".to_owned()
}

/// Go's `leadingInt`: consumes leading ASCII digits; overflow past `1 << 63` is an error.
fn leading_int(text: &str) -> Result<(u64, &str), String> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let mut value: u64 = 0;
    for digit in text[..end].bytes() {
        if value > ACCUMULATOR_LIMIT / 10 {
            return Err(too_long());
        }
        value = value * 10 + u64::from(digit - b'0');
        if value > ACCUMULATOR_LIMIT {
            return Err(too_long());
        }
    }
    Ok((value, &text[end..]))
}

/// Go's `leadingFraction`: consumes leading ASCII digits, keeping as many as fit and returning the
/// power of ten they were scaled by.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let mut value: u64 = 0;
    let mut scale = 1_f64;
    let mut overflow = false;
    for digit in text[..end].bytes() {
        if overflow {
            continue;
        }
        if value > (ACCUMULATOR_LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > ACCUMULATOR_LIMIT {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[end..])
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // ASCII "u", MICRO SIGN (U+00B5) and GREEK SMALL LETTER MU (U+03BC), as Go accepts.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Duration {
        match parse_go_duration(text) {
            Ok(duration) => duration,
            Err(err) => panic!("{text:?} should parse: {err}"),
        }
    }

    #[test]
    fn accepts_what_the_watchdog_accepts() {
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("30", Duration::from_secs(30)),
            ("+5", Duration::from_secs(5)),
            ("-0", Duration::ZERO),
            ("-00", Duration::ZERO),
            ("030", Duration::from_secs(30)),
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1m5s", Duration::from_secs(65)),
            ("1m05s", Duration::from_secs(65)),
            ("1h", Duration::from_secs(3_600)),
            ("1.5h", Duration::from_secs(5_400)),
            ("2h45m", Duration::from_secs(9_900)),
            (".5s", Duration::from_millis(500)),
            ("5.s", Duration::from_secs(5)),
            ("+1.5s", Duration::from_millis(1_500)),
            ("1h1m1s1ms1us1ns", Duration::new(3_661, 1_001_001)),
            ("3µs", Duration::from_micros(3)),
            ("3μs", Duration::from_micros(3)),
            ("100ns", Duration::from_nanos(100)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("9223372036", Duration::from_secs(9_223_372_036)),
            (
                "2562047h47m16.854775807s",
                Duration::from_nanos(i64::MAX as u64),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(ok(text), *expected, "parsing {text:?}");
        }
    }

    #[test]
    fn rejects_what_go_rejects_and_negative_durations() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("-", "empty"),
            ("s", "expected a number"),
            (".s", "at least one digit"),
            ("10x", "unknown unit"),
            ("1.5", "missing unit"),
            ("5 s", "unknown unit"),
            (" 5s", "expected a number"),
            ("5s ", "unknown unit"),
            ("-5", "missing unit"),
            ("-5s", "negative"),
            ("1d", "unknown unit"),
            ("9223372037", "292 years"),
            ("2562047h47m16.854775808s", "292 years"),
            ("99999999999999999999s", "292 years"),
            ("3000000h", "292 years"),
        ];
        for (text, reason) in table {
            match parse_go_duration(text) {
                Ok(duration) => panic!("{text:?} should be rejected, got {duration:?}"),
                Err(err) => {
                    let message = err.to_string();
                    assert!(
                        message.contains(reason) && message.contains(&format!("{text:?}")),
                        "{text:?}: unexpected message {message:?}"
                    );
                }
            }
        }
    }

    /// Go's `Duration.String()`, the form the watchdog and Go tooling print durations in.
    fn go_string(nanos: u64) -> String {
        fn with_fraction(value: u64, per_unit: u64) -> String {
            let whole = value / per_unit;
            let fraction = value % per_unit;
            if fraction == 0 {
                return whole.to_string();
            }
            let width = per_unit.ilog10() as usize;
            let digits = format!("{fraction:0width$}");
            format!("{whole}.{}", digits.trim_end_matches('0'))
        }
        if nanos == 0 {
            return "0s".to_owned();
        }
        if nanos < NANOS_PER_SECOND {
            return match nanos {
                n if n < 1_000 => format!("{n}ns"),
                n if n < 1_000_000 => format!("{}µs", with_fraction(n, 1_000)),
                n => format!("{}ms", with_fraction(n, 1_000_000)),
            };
        }
        let hours = nanos / (3_600 * NANOS_PER_SECOND);
        let minutes = nanos / (60 * NANOS_PER_SECOND) % 60;
        let seconds = nanos % (60 * NANOS_PER_SECOND);
        let mut out = String::new();
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&format!("{}s", with_fraction(seconds, NANOS_PER_SECOND)));
        out
    }

    #[test]
    fn go_string_matches_go_for_known_values() {
        // Outputs of Go's time.Duration.String() for these values.
        assert_eq!(go_string(0), "0s");
        assert_eq!(go_string(1), "1ns");
        assert_eq!(go_string(1_500), "1.5µs");
        assert_eq!(go_string(1_500_000), "1.5ms");
        assert_eq!(go_string(65 * NANOS_PER_SECOND), "1m5s");
        assert_eq!(go_string(3_600 * NANOS_PER_SECOND), "1h0m0s");
        assert_eq!(go_string(i64::MAX as u64), "2562047h47m16.854775807s");
    }

    proptest! {
        #[test]
        fn round_trips_go_formatted_durations(nanos in 0..=MAX_NANOS) {
            let text = go_string(nanos);
            prop_assert_eq!(parse_go_duration(&text).ok(), Some(Duration::from_nanos(nanos)), "text {}", text);
        }

        #[test]
        fn round_trips_small_go_formatted_durations(nanos in 0_u64..10_000_000_000) {
            let text = go_string(nanos);
            prop_assert_eq!(parse_go_duration(&text).ok(), Some(Duration::from_nanos(nanos)), "text {}", text);
        }

        #[test]
        fn sums_every_unit_of_a_composite_duration(
            hours in 0_u64..1_000, minutes in 0_u64..1_000, seconds in 0_u64..1_000,
            millis in 0_u64..1_000, micros in 0_u64..1_000, nanos in 0_u64..1_000,
        ) {
            let text = format!("{hours}h{minutes}m{seconds}s{millis}ms{micros}us{nanos}ns");
            let expected = Duration::from_secs(hours * 3_600 + minutes * 60 + seconds)
                + Duration::from_millis(millis)
                + Duration::from_micros(micros)
                + Duration::from_nanos(nanos);
            prop_assert_eq!(parse_go_duration(&text).ok(), Some(expected), "text {}", text);
        }

        #[test]
        fn bare_integers_are_seconds(seconds in 0_u64..=9_223_372_036) {
            prop_assert_eq!(parse_go_duration(&seconds.to_string()).ok(), Some(Duration::from_secs(seconds)));
        }

        #[test]
        fn any_text_parses_within_range_or_is_named_in_the_error(text in "\\PC{0,24}") {
            match parse_go_duration(&text) {
                Ok(duration) => prop_assert!(duration <= Duration::from_nanos(MAX_NANOS)),
                Err(err) => {
                    let quoted = format!("{text:?}");
                    prop_assert!(err.to_string().contains(&quoted));
                }
            }
        }
    }
}
