//! UTC calendar arithmetic for the fleet: a day as a count of days since
//! 1970-01-01, to and from its year, month and day in the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, exact for every `i64` day a timestamp can name).
//!
//! No time zones, no leap seconds: a UTC day is 86 400 seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// The day `days` after 1970-01-01 (before it when negative) as
/// `(year, month, day)`, month and day counted from 1.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: month 1..=12, day 1..=31.
    (year, small(month), small(day))
}

/// Days from 1970-01-01 to `year`-`month`-`day` (negative before it).
///
/// `month` is 1 to 12. A `day` past the month's end counts on into the
/// next month (2015-02-30 is 2015-03-02), as the callers validate only
/// `1..=31`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day containing `at`, as days since 1970-01-01; an instant
/// before the epoch falls on a negative day (one second before it is day
/// -1).
pub fn day_number(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => {
            let secs = i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX);
            -(secs.saturating_add(86_399) / 86_400)
        }
    }
}

fn small(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_days() {
        let cases = [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (16_677, (2015, 8, 30)),
            (19_782, (2024, 2, 29)),
            (19_783, (2024, 3, 1)),
            (-719_468, (0, 3, 1)),
        ];
        for (days, date) in cases {
            assert_eq!(civil_from_days(days), date, "day {days}");
            assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips_in_order() {
        let mut previous = civil_from_days(-146_098);
        for days in -146_097..=146_097 {
            let date = civil_from_days(days);
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);
            assert!(date > previous, "{date:?} after {previous:?}");
            assert!((1..=12).contains(&date.1) && (1..=31).contains(&date.2));
            previous = date;
        }
    }

    #[test]
    fn a_day_past_the_months_end_runs_into_the_next() {
        assert_eq!(days_from_civil(2015, 2, 30), days_from_civil(2015, 3, 2));
    }

    #[test]
    fn day_numbers_floor_on_both_sides_of_the_epoch() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let before = |secs: u64| UNIX_EPOCH - Duration::from_secs(secs);
        assert_eq!(day_number(at(0)), 0);
        assert_eq!(day_number(at(86_399)), 0);
        assert_eq!(day_number(at(86_400)), 1);
        assert_eq!(day_number(at(1_440_938_160)), 16_677);
        assert_eq!(day_number(before(1)), -1);
        assert_eq!(day_number(before(86_400)), -1);
        assert_eq!(day_number(before(86_401)), -2);
    }
}
