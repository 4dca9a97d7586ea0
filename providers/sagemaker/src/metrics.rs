//! A monitor's SLO figures from an endpoint's CloudWatch metrics: SageMaker's data capture
//! records neither latency nor failed requests, but CloudWatch counts every request.
//!
//! | figure | metric (`AWS/SageMaker`, `EndpointName` + `VariantName`) | read as |
//! |---|---|---|
//! | requests | `Invocations`, `Sum` | summed over the variants |
//! | server errors | `Invocation5XXErrors`, `Sum` | summed over the variants |
//! | p50 / p99 latency (ms) | `ModelLatency`, `p50` / `p99` (microseconds) | the largest variant's, / 1000 |
//!
//! One `GetMetricData` period covers the whole window (its start floored and its end raised
//! to whole minutes), so a percentile is the window's, not a minute's.
//!
//! # Caveats
//! - `ModelLatency` is the model container's latency; SageMaker's own overhead
//!   (`OverheadLatency`) is not in it.
//! - CloudWatch publishes a minute a minute or two after it ends.

use crate::alarms::stat_query as query;
use aws_sdk_cloudwatch::types::MetricDataQuery;
use mlctl_core::monitoring::slo::Measured;

const MINUTE: i64 = 60;

/// The window as CloudWatch is asked for it: whole minutes, one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Unix seconds.
    pub start: i64,
    /// Unix seconds, after `start`.
    pub end: i64,
    /// `end - start` (a multiple of 60, at least 60).
    pub period: i32,
}

impl Span {
    pub(crate) fn of(from: time::OffsetDateTime, to: time::OffsetDateTime) -> Span {
        let from = from.unix_timestamp();
        let to = to.unix_timestamp().max(from);
        let start = from - from.rem_euclid(MINUTE);
        let end = (to.div_euclid(MINUTE) + 1) * MINUTE;
        Span {
            start,
            end,
            period: (end - start).clamp(MINUTE, i32::MAX as i64) as i32,
        }
    }
}

/// The queries of `endpoint`'s `variants`: requests and 5xx always, the latencies `slo`
/// bounds. Ids: `inv<i>`, `err<i>`, `p50_<i>`, `p99_<i>` (CloudWatch wants them to start
/// with a lower-case letter).
pub(crate) fn slo_queries(
    endpoint: &str,
    variants: &[String],
    slo: &mlctl_spec::Slo,
    period: i32,
) -> Vec<MetricDataQuery> {
    let mut out = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        out.push(query(
            &format!("inv{i}"),
            "Invocations",
            "Sum",
            endpoint,
            v,
            period,
            true,
        ));
        out.push(query(
            &format!("err{i}"),
            "Invocation5XXErrors",
            "Sum",
            endpoint,
            v,
            period,
            true,
        ));
        if slo.p50_latency_ms.is_some() {
            out.push(query(
                &format!("p50_{i}"),
                "ModelLatency",
                "p50",
                endpoint,
                v,
                period,
                true,
            ));
        }
        if slo.p99_latency_ms.is_some() {
            out.push(query(
                &format!("p99_{i}"),
                "ModelLatency",
                "p99",
                endpoint,
                v,
                period,
                true,
            ));
        }
    }
    out
}

/// The figures of `GetMetricData`'s values (query id, value), over `span`.
pub(crate) fn measured(endpoint: &str, values: &[(String, f64)], span: Span) -> Measured {
    let sum = |prefix: &str| -> f64 {
        values
            .iter()
            .filter(|(id, _)| {
                id.starts_with(prefix) && id[prefix.len()..].bytes().all(|b| b.is_ascii_digit())
            })
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .sum()
    };
    let worst_ms = |prefix: &str| -> Option<f64> {
        values
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .reduce(f64::max)
            .map(|us| us / 1000.0)
    };
    Measured {
        requests: sum("inv").round() as u64,
        server_errors: sum("err").round() as u64,
        p50_ms: worst_ms("p50_"),
        p99_ms: worst_ms("p99_"),
        seconds: (span.end - span.start) as f64,
        source: format!(
            "every request of endpoint {endpoint} from its CloudWatch metrics, not the capture: Invocations and Invocation5XXErrors; latencies are ModelLatency (the model's, without SageMaker's overhead), the largest variant's; CloudWatch publishes a minute a minute or two after it ends"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn the_span_is_whole_minutes_and_one_period() {
        let s = Span::of(at(1_800_000_030), at(1_800_003_630));
        assert_eq!(
            (s.start, s.end, s.period),
            (1_800_000_000, 1_800_003_660, 3660)
        );
        let s = Span::of(at(1_800_000_030), at(1_800_000_030));
        assert_eq!(s.period, 60);
    }

    #[test]
    fn every_variant_is_asked_and_only_the_bounded_latencies() {
        let slo = mlctl_spec::Slo {
            p50_latency_ms: None,
            p99_latency_ms: Some(100.0),
            max_error_rate: Some(0.01),
            min_throughput: None,
        };
        let q = slo_queries("iris", &["blue".into(), "green".into()], &slo, 600);
        let ids: Vec<&str> = q.iter().filter_map(|q| q.id()).collect();
        assert_eq!(ids, ["inv0", "err0", "p99_0", "inv1", "err1", "p99_1"]);
        let stat = q[2].metric_stat().unwrap();
        assert_eq!((stat.stat(), stat.period()), (Some("p99"), Some(600)));
        let dims: Vec<(&str, &str)> = stat
            .metric()
            .unwrap()
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect();
        assert_eq!(dims, [("EndpointName", "iris"), ("VariantName", "blue")]);
    }

    #[test]
    fn figures_add_the_variants_and_take_the_worst_latency_in_ms() {
        let span = Span::of(at(1_800_000_000), at(1_800_000_590));
        let v = |id: &str, x: f64| (id.to_string(), x);
        let m = measured(
            "iris",
            &[
                v("inv0", 900.0),
                v("inv1", 100.0),
                v("err0", 9.0),
                v("err1", 11.0),
                v("p99_0", 80_000.0),
                v("p99_1", 120_000.0),
            ],
            span,
        );
        assert_eq!((m.requests, m.server_errors), (1000, 20));
        assert_eq!((m.p50_ms, m.p99_ms), (None, Some(120.0)));
        assert_eq!(m.seconds, 600.0);
    }
}
