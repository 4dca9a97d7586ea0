//! A Monitor's SLOs over the window, from the captured records that carry a `status` and a
//! `latencyMs` (mlctl's own capture writes both, for failed requests too).
//!
//! Capture samples requests, so the error rate and the percentiles are estimates from the
//! sample (the result says how many requests it judged), and throughput is the captured
//! count divided by the sampling share and by the window's length: a duration window is its
//! duration; a count window runs from its oldest record to now. Percentiles are by nearest
//! rank. Targets whose records lack the fields either give the endpoint's own metrics instead
//! ([`Measured`], [`judge_measured`]: every request, not a sample) or refuse the SLOs at plan
//! time; a record without them here is left out and counted in the note.

use super::Window;
use mlctl_spec::Slo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The SLOs of one evaluation, as stored with the monitor's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloResult {
    /// Requests judged: captured records of the window with a status and a latency.
    pub requests: u64,
    /// The endpoint's `capture.samplingPercent`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_percent: Option<f64>,
    /// One per objective the spec sets.
    pub objectives: Vec<Objective>,
    /// That the figures are estimates from a sample, and what was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// The `slo` field (`p99LatencyMs`, ...).
    pub objective: String,
    /// What the window measured; `None` when it could not be measured (see `note`).
    pub value: Option<f64>,
    /// The spec's bound.
    pub limit: f64,
    /// Whether the bound was broken.
    pub breached: bool,
    /// Why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The window's figures as the endpoint's own metrics give them (a target whose capture
/// lacks status and latency, e.g. Azure Monitor's metrics of an Azure ML endpoint): every
/// request, not a sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measured {
    /// Requests the endpoint answered in the window.
    pub requests: u64,
    /// Of which with a 5xx status.
    pub server_errors: u64,
    /// Median latency (ms), `None` without data.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency (ms), `None` without data.
    pub p99_ms: Option<f64>,
    /// The window's length, seconds.
    pub seconds: f64,
    /// Where the figures come from and how they are read, for the result's note.
    pub source: String,
}

/// Judges `slo` over figures the endpoint's own metrics gave.
pub fn judge_measured(slo: &Slo, m: &Measured) -> SloResult {
    let mut objectives = Vec::new();
    let none = "the endpoint's metrics have no data for the window";
    let mut push = |objective: &str, limit: Option<f64>, at_most: bool, value: Option<f64>| {
        let Some(limit) = limit else { return };
        objectives.push(Objective {
            objective: objective.to_string(),
            value,
            limit,
            breached: value.is_some_and(|v| if at_most { v > limit } else { v < limit }),
            note: value.is_none().then(|| none.to_string()),
        });
    };
    push("p50LatencyMs", slo.p50_latency_ms, true, m.p50_ms);
    push("p99LatencyMs", slo.p99_latency_ms, true, m.p99_ms);
    push(
        "maxErrorRate",
        slo.max_error_rate,
        true,
        (m.requests > 0).then(|| m.server_errors as f64 / m.requests as f64),
    );
    push(
        "minThroughput",
        slo.min_throughput,
        false,
        (m.seconds > 0.0).then(|| m.requests as f64 / m.seconds),
    );
    SloResult {
        requests: m.requests,
        sampling_percent: None,
        objectives,
        note: Some(m.source.clone()),
    }
}

/// A captured request's status and latency, if the record has both.
fn timing(record: &Value) -> Option<(u16, f64)> {
    let status = record.get("status")?.as_u64()?;
    let latency = record.get("latencyMs")?.as_f64()?;
    (latency.is_finite() && latency >= 0.0 && status <= 999).then_some((status as u16, latency))
}

/// The nearest-rank `p`th percentile of sorted `xs` (not empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Judges `slo` over the window's records.
pub fn judge(
    slo: &Slo,
    records: &[Value],
    window: Window,
    now: time::OffsetDateTime,
    sampling_percent: Option<f64>,
) -> SloResult {
    let mut acc = Tally::new(window, now);
    for r in records {
        acc.push(r);
    }
    acc.judge(slo, sampling_percent)
}

/// What the SLOs read of the window's records, one record at a time.
pub struct Tally {
    window: Window,
    now: time::OffsetDateTime,
    latencies: Vec<f64>,
    errors: u64,
    untimed: u64,
    oldest: Option<time::OffsetDateTime>,
}

impl Tally {
    /// Nothing seen yet.
    pub fn new(window: Window, now: time::OffsetDateTime) -> Tally {
        Tally {
            window,
            now,
            latencies: Vec::new(),
            errors: 0,
            untimed: 0,
            oldest: None,
        }
    }

    /// Counts one captured record (those outside the window are left out).
    pub fn push(&mut self, r: &Value) {
        let t = super::record_time(r);
        if let (Window::Since(d), Some(t)) = (self.window, t)
            && t < self.now - d
        {
            return;
        }
        let Some((status, latency)) = timing(r) else {
            self.untimed += 1;
            return;
        };
        if let Some(t) = t {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        }
        if status >= 500 {
            self.errors += 1;
        }
        self.latencies.push(latency);
    }

    /// Judges `slo` over what was counted.
    pub fn judge(self, slo: &Slo, sampling_percent: Option<f64>) -> SloResult {
        let Tally {
            window,
            now,
            mut latencies,
            errors,
            untimed,
            oldest,
        } = self;
        latencies.sort_by(f64::total_cmp);
        let n = latencies.len() as u64;
        let none = |why: &str| (None, Some(why.to_string()));
        let no_requests = "no captured request of the window has a status and a latency";
        let seconds = match window {
            Window::Since(d) => Some(d.as_secs_f64()),
            Window::Last(_) => oldest.map(|o| (now - o).as_seconds_f64()),
        };
        let mut objectives = Vec::new();
        let mut push = |objective: &str,
                        limit: Option<f64>,
                        at_most: bool,
                        got: (Option<f64>, Option<String>)| {
            let Some(limit) = limit else { return };
            let (value, note) = got;
            objectives.push(Objective {
                objective: objective.to_string(),
                value,
                limit,
                breached: value.is_some_and(|v| if at_most { v > limit } else { v < limit }),
                note,
            });
        };
        let pct = |p: f64| {
            if latencies.is_empty() {
                none(no_requests)
            } else {
                (Some(percentile(&latencies, p)), None)
            }
        };
        push("p50LatencyMs", slo.p50_latency_ms, true, pct(50.0));
        push("p99LatencyMs", slo.p99_latency_ms, true, pct(99.0));
        push(
            "maxErrorRate",
            slo.max_error_rate,
            true,
            if n == 0 {
                none(no_requests)
            } else {
                (Some(errors as f64 / n as f64), None)
            },
        );
        let throughput = match (sampling_percent, seconds) {
            (Some(p), _) if p.is_nan() || p <= 0.0 => {
                none("the endpoint captures no requests (samplingPercent 0)")
            }
            (None, _) => none(
                "the endpoint's sampling percent is unknown, so the captured count cannot be scaled",
            ),
            (_, None) => none("no captured request of the window has a time"),
            (_, Some(s)) if s.is_nan() || s <= 0.0 => none("the window has no length"),
            (Some(p), Some(s)) => (Some(n as f64 / (p / 100.0) / s), None),
        };
        push("minThroughput", slo.min_throughput, false, throughput);
        let mut notes = Vec::new();
        if let Some(p) = sampling_percent
            && p < 100.0
        {
            notes.push(format!(
                "estimated from a {p}% sample of the requests ({n} captured)"
            ));
        }
        if untimed > 0 {
            notes.push(format!(
                "{untimed} captured records without a status and a latency left out"
            ));
        }
        SloResult {
            requests: n,
            sampling_percent,
            objectives,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn measured_figures_are_judged_against_every_bound() {
        let slo = Slo {
            p50_latency_ms: Some(20.0),
            p99_latency_ms: Some(100.0),
            max_error_rate: Some(0.01),
            min_throughput: Some(2.0),
        };
        let m = Measured {
            requests: 600,
            server_errors: 12,
            p50_ms: Some(8.0),
            p99_ms: Some(140.0),
            seconds: 600.0,
            source: "from Azure Monitor".into(),
        };
        let r = judge_measured(&slo, &m);
        let got: Vec<(&str, Option<f64>, bool)> = r
            .objectives
            .iter()
            .map(|o| (o.objective.as_str(), o.value, o.breached))
            .collect();
        assert_eq!(
            got,
            [
                ("p50LatencyMs", Some(8.0), false),
                ("p99LatencyMs", Some(140.0), true),
                ("maxErrorRate", Some(0.02), true),
                ("minThroughput", Some(1.0), true),
            ]
        );
        assert_eq!(
            (r.requests, r.note.as_deref()),
            (600, Some("from Azure Monitor"))
        );
        let empty = judge_measured(&slo, &Measured::default());
        assert!(
            empty
                .objectives
                .iter()
                .all(|o| o.value.is_none() && !o.breached)
        );
    }

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-01-01 12:00:00 UTC)
    }

    /// A record served `ago` seconds before [`now`].
    fn req(ago: i64, status: u16, latency: f64) -> Value {
        let t = now() - time::Duration::seconds(ago);
        json!({
            "time": t.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "status": status,
            "latencyMs": latency,
        })
    }

    fn slo() -> Slo {
        Slo {
            p50_latency_ms: None,
            p99_latency_ms: None,
            max_error_rate: None,
            min_throughput: None,
        }
    }

    fn objective<'r>(r: &'r SloResult, name: &str) -> &'r Objective {
        r.objectives.iter().find(|o| o.objective == name).unwrap()
    }

    #[test]
    fn percentiles_are_by_nearest_rank_over_the_window() {
        // Latencies 1..=100 ms, and one older than the window that would be the slowest.
        let mut records: Vec<Value> = (1..=100).map(|i| req(10, 200, f64::from(i))).collect();
        records.push(req(7200, 200, 10_000.0));
        let s = Slo {
            p50_latency_ms: Some(50.0),
            p99_latency_ms: Some(98.0),
            ..slo()
        };
        let r = judge(
            &s,
            &records,
            Window::Since(Duration::from_secs(3600)),
            now(),
            Some(100.0),
        );
        assert_eq!(r.requests, 100);
        assert_eq!(objective(&r, "p50LatencyMs").value, Some(50.0));
        assert!(!objective(&r, "p50LatencyMs").breached);
        assert_eq!(objective(&r, "p99LatencyMs").value, Some(99.0));
        assert!(objective(&r, "p99LatencyMs").breached);
        assert_eq!(r.note, None, "nothing sampled, nothing left out");
    }

    #[test]
    fn the_error_rate_counts_server_errors_only() {
        let records = vec![
            req(1, 200, 1.0),
            req(1, 400, 1.0),
            req(1, 500, 1.0),
            req(1, 503, 1.0),
        ];
        let s = Slo {
            max_error_rate: Some(0.25),
            ..slo()
        };
        let r = judge(&s, &records, Window::Last(10), now(), Some(100.0));
        assert_eq!(objective(&r, "maxErrorRate").value, Some(0.5));
        assert!(objective(&r, "maxErrorRate").breached);
    }

    #[test]
    fn throughput_is_scaled_by_the_sampling_percent_and_estimates_say_so() {
        // 360 captured in the last hour at 10%: 3600 requests, one a second.
        let records: Vec<Value> = (0..360).map(|i| req(i * 10, 200, 1.0)).collect();
        let s = Slo {
            min_throughput: Some(2.0),
            ..slo()
        };
        let r = judge(
            &s,
            &records,
            Window::Since(Duration::from_secs(3600)),
            now(),
            Some(10.0),
        );
        let t = objective(&r, "minThroughput");
        assert!((t.value.unwrap() - 1.0).abs() < 1e-9, "{t:?}");
        assert!(t.breached);
        assert!(
            r.note
                .as_deref()
                .unwrap()
                .contains("estimated from a 10% sample")
        );
        // A count window runs from its oldest record to now: 100 records over 1000 s.
        let records: Vec<Value> = (1..=100).map(|i| req(i * 10, 200, 1.0)).collect();
        let r = judge(&s, &records, Window::Last(100), now(), Some(100.0));
        assert!((objective(&r, "minThroughput").value.unwrap() - 0.1).abs() < 1e-9);
        // Without the sampling percent the count cannot be scaled: not measured, not breached.
        let r = judge(&s, &records, Window::Last(100), now(), None);
        let t = objective(&r, "minThroughput");
        assert_eq!((t.value, t.breached), (None, false));
        assert!(t.note.as_deref().unwrap().contains("sampling percent"));
    }

    #[test]
    fn records_without_a_status_and_latency_are_left_out_and_counted() {
        let records = vec![
            json!({"captureData": {}, "eventMetadata": {"inferenceTime": "2026-01-01T11:59:00Z"}}),
            json!({"status": "200", "latencyMs": 1.0}),
            json!({"status": 200, "latencyMs": -1.0}),
            json!({"status": 200, "latencyMs": "fast"}),
            json!(null),
            req(1, 200, 2.0),
        ];
        let s = Slo {
            p99_latency_ms: Some(1.0),
            ..slo()
        };
        let r = judge(&s, &records, Window::Last(10), now(), Some(100.0));
        assert_eq!(r.requests, 1);
        assert!(objective(&r, "p99LatencyMs").breached);
        assert!(
            r.note
                .as_deref()
                .unwrap()
                .contains("5 captured records without")
        );
        // None at all: not measured.
        let r = judge(&s, &records[..5], Window::Last(10), now(), Some(100.0));
        let p = objective(&r, "p99LatencyMs");
        assert_eq!((p.value, p.breached), (None, false));
    }
}
