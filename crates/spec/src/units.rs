//! Durations, memory sizes and schedules as written in specs.

use std::time::Duration;

/// A value that is not a duration, memory size or schedule; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// What is wrong and what to write instead, quoting the value.
    pub message: String,
}

impl std::fmt::Display for UnitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

impl From<UnitError> for String {
    fn from(e: UnitError) -> String {
        e.message
    }
}

fn typed<T>(r: Result<T, String>) -> Result<T, UnitError> {
    r.map_err(|message| UnitError { message })
}

/// Parses `90s`, `10m`, `1h30m`, `500ms`, `2d`.
///
/// # Errors
/// A [`UnitError`] naming the value and the units there are.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    typed(duration(s))
}

/// Parses `512Mi`, `4Gi`, `2G`, `1000000` into bytes.
///
/// # Errors
/// A [`UnitError`] naming the value and the units there are.
pub fn parse_memory(s: &str) -> Result<u64, UnitError> {
    typed(memory(s))
}

/// Parses `every 15m` or a 5-field cron expression (`0 * * * *`).
///
/// # Errors
/// A [`UnitError`] naming the field that is wrong.
pub fn parse_schedule(s: &str) -> Result<Schedule, UnitError> {
    typed(schedule(s))
}

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration; write e.g. `30s`, `10m`, `1h30m`"
            ));
        }
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}` is not a duration; write e.g. `30s`, `10m`, `1h30m`"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            _ => {
                return Err(format!(
                    "`{s}` is not a duration; units are ms, s, m, h, d (e.g. `10m`)"
                ));
            }
        };
        // `from_secs_f64` and `+=` panic past u64 seconds; a spec must not crash mlctl.
        let too_long = || format!("`{s}` is too long a duration");
        let part = Duration::try_from_secs_f64(secs).map_err(|_| too_long())?;
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn memory(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..split]
        .parse()
        .map_err(|_| format!("`{s}` is not a memory size; write e.g. `512Mi` or `4Gi`"))?;
    let mult: f64 = match &s[split..] {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        unit => {
            // `4GB`, `512MB`: the common spelling from other tools.
            let base = unit.strip_suffix(['B', 'b']).unwrap_or("");
            if ["K", "M", "G", "T"].contains(&base.to_ascii_uppercase().as_str()) {
                let (n, b) = (&s[..split], base.to_ascii_uppercase());
                return Err(format!(
                    "`{s}` is not a memory size; write `{n}{b}` (powers of 1000) or `{n}{b}i` (powers of 1024)"
                ));
            }
            return Err(format!(
                "`{s}` is not a memory size; units are Ki, Mi, Gi, Ti, K, M, G, T (e.g. `512Mi`)"
            ));
        }
    };
    Ok((n * mult) as u64)
}

/// A monitor schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `every 1h`.
    Every(Duration),
    /// A 5-field cron expression, kept as text.
    Cron(String),
}

fn schedule(s: &str) -> Result<Schedule, String> {
    let s = s.trim();
    if let Some(d) = s.strip_prefix("every ") {
        let d = duration(d)?;
        if d < Duration::from_secs(60) {
            return Err(format!("schedule `{s}` is shorter than one minute"));
        }
        return Ok(Schedule::Every(d));
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    if fields.len() != 5 {
        return Err(format!(
            "`{s}` is not a schedule; write `every 1h` or a 5-field cron expression like `0 * * * *`"
        ));
    }
    let names = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    for ((field, (lo, hi)), what) in fields.iter().zip(ranges).zip(names) {
        for part in field.split(',') {
            let (range, step) = part.split_once('/').unwrap_or((part, "1"));
            if step.parse::<u32>().map(|s| s == 0).unwrap_or(true) {
                return Err(format!(
                    "cron {what} field `{field}` has a bad step; write e.g. `*/15`"
                ));
            }
            if range == "*" {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            for v in [a, b] {
                match v.parse::<u32>() {
                    Ok(n) if (lo..=hi).contains(&n) => {}
                    _ => {
                        return Err(format!(
                            "cron {what} field `{field}` is not a number from {lo} to {hi}"
                        ));
                    }
                }
            }
        }
    }
    Ok(Schedule::Cron(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn units() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("99999999999999999999999999d").is_err());
        assert!(parse_duration("18446744073709551615s18446744073709551615s").is_err());
        assert_eq!(parse_memory("4Gi").unwrap(), 4 << 30);
        assert!(parse_memory("4GB").is_err());
        assert_eq!(
            parse_schedule("every 1h").unwrap(),
            Schedule::Every(Duration::from_secs(3600))
        );
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("61 * * * *").is_err());
        assert!(parse_schedule("hourly").is_err());
    }
}
