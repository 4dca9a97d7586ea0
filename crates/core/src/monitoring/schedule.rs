//! When a monitor is due: its `schedule` (`every 1h`, or a 5-field cron expression in UTC)
//! against its last evaluation. `mlctl monitor run --due` (what a cron job, a CI schedule or
//! the `mlctl watch` agent calls) evaluates only the due ones.

use mlctl_spec::units::{Schedule, parse_schedule};
use time::{Duration, OffsetDateTime};

/// Whether a monitor with `schedule` last evaluated at `last` is due at `now`: never
/// evaluated; `every D` and at least D since the last evaluation; a cron expression with a
/// fire time after the last evaluation and at or before now.
///
/// # Errors
/// The schedule does not parse (the validator refuses it first).
pub fn is_due(
    schedule: &str,
    last: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<bool, String> {
    let Some(last) = last else { return Ok(true) };
    match parse_schedule(schedule).map_err(|e| e.to_string())? {
        Schedule::Every(d) => {
            let d = Duration::try_from(d).map_err(|e| e.to_string())?;
            Ok(now - last >= d)
        }
        Schedule::Cron(expr) => {
            let cron = Cron::parse(&expr)?;
            // The first whole minute after the last evaluation, up to now. A gap of more than
            // a year is due whenever the expression fires at all in its first year.
            let mut t = last
                .replace_second(0)
                .map_err(|e| e.to_string())?
                .replace_nanosecond(0)
                .map_err(|e| e.to_string())?
                + Duration::minutes(1);
            let end = now.min(t + Duration::days(366));
            while t <= end {
                if cron.matches(t) {
                    return Ok(true);
                }
                t += Duration::minutes(1);
            }
            Ok(false)
        }
    }
}

/// A parsed 5-field cron expression: the allowed values of each field.
struct Cron {
    minute: Vec<bool>,
    hour: Vec<bool>,
    day: Vec<bool>,
    month: Vec<bool>,
    weekday: Vec<bool>,
    /// Whether day-of-month and day-of-week were both restricted (then either may match,
    /// as in Vixie cron).
    either_day: bool,
}

impl Cron {
    fn parse(expr: &str) -> Result<Cron, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("`{expr}` is not a 5-field cron expression"));
        }
        let mut weekday = field(f[4], 0, 7)?;
        // 7 is Sunday too.
        if weekday[7] {
            weekday[0] = true;
        }
        Ok(Cron {
            minute: field(f[0], 0, 59)?,
            hour: field(f[1], 0, 23)?,
            day: field(f[2], 1, 31)?,
            month: field(f[3], 1, 12)?,
            weekday,
            either_day: f[2] != "*" && f[4] != "*",
        })
    }

    fn matches(&self, t: OffsetDateTime) -> bool {
        let t = t.to_offset(time::UtcOffset::UTC);
        let day = self.day[usize::from(t.day())];
        let weekday = self.weekday[usize::from(t.weekday().number_days_from_sunday())];
        let day_ok = if self.either_day {
            day || weekday
        } else {
            day && weekday
        };
        self.minute[usize::from(t.minute())]
            && self.hour[usize::from(t.hour())]
            && self.month[usize::from(u8::from(t.month()))]
            && day_ok
    }
}

/// The values a cron field allows, indexed by value (`lo..=hi`).
fn field(text: &str, lo: u32, hi: u32) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; hi as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{part}`: the step must be a positive number"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a, lo, hi)?, num(b, lo, hi)?)
        } else {
            let v = num(range, lo, hi)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if part.contains('/') { hi } else { v })
        };
        if from > to {
            return Err(format!("`{part}`: the range runs backwards"));
        }
        let mut v = from;
        while v <= to {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Ok(allowed)
}

fn num(s: &str, lo: u32, hi: u32) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| format!("`{s}` is not a number from {lo} to {hi}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn every_is_due_once_its_interval_has_passed() {
        let last = datetime!(2026-12-01 10:00 UTC);
        assert!(is_due("every 1h", None, last).unwrap(), "never evaluated");
        assert!(!is_due("every 1h", Some(last), datetime!(2026-12-01 10:59 UTC)).unwrap());
        assert!(is_due("every 1h", Some(last), datetime!(2026-12-01 11:00 UTC)).unwrap());
    }

    #[test]
    fn cron_is_due_when_it_fired_since_the_last_evaluation() {
        let last = datetime!(2026-12-01 10:05 UTC);
        // Hourly at minute 0: fires at 11:00.
        assert!(!is_due("0 * * * *", Some(last), datetime!(2026-12-01 10:59 UTC)).unwrap());
        assert!(is_due("0 * * * *", Some(last), datetime!(2026-12-01 11:00 UTC)).unwrap());
        // Every 15 minutes: 10:15.
        assert!(is_due("*/15 * * * *", Some(last), datetime!(2026-12-01 10:15 UTC)).unwrap());
        assert!(!is_due("*/15 * * * *", Some(last), datetime!(2026-12-01 10:14 UTC)).unwrap());
        // Weekdays at 09:00; 2026-12-05 is a Saturday, so the next is Monday 12-07.
        let friday = datetime!(2026-12-04 09:30 UTC);
        assert!(!is_due("0 9 * * 1-5", Some(friday), datetime!(2026-12-06 23:59 UTC)).unwrap());
        assert!(is_due("0 9 * * 1-5", Some(friday), datetime!(2026-12-07 09:00 UTC)).unwrap());
        // Day of month and day of week both restricted: either one fires (the 1st, or Sundays).
        let last = datetime!(2026-12-01 00:30 UTC);
        assert!(is_due("0 0 1 * 0", Some(last), datetime!(2026-12-06 00:00 UTC)).unwrap());
    }
}
