//! What a deployment served during a bake, from Azure Monitor's metrics of the online
//! deployment: the figures [`mlctl_core::bake::judge`] needs to promote a canary (or a
//! blue-green's shadow) or roll it back, as on every other target.
//!
//! | figure | metric of `onlineEndpoints/E/deployments/D` | read as |
//! |---|---|---|
//! | requests | `RequestsPerMinute`, split by `envoy_response_code`, aggregations `total,average` | the sum over the bake's minutes and every code |
//! | server errors | the same, codes `5xx` | their sum |
//! | p99 latency (ms) | `RequestLatency_P99`, aggregations `maximum,average` | the largest minute's value (an upper bound of the bake's p99) |
//!
//! Both ask a second aggregation because Azure documents only `Average` for these metrics: a
//! minute's `total` (or `maximum`) is read when Azure gives it, else its `average` (one
//! emission per minute makes them equal). The split asks `top=50` series, so no status code
//! is cut off (Azure returns 10 by default when a dimension is filtered).
//!
//! The query is `GET <deployment id>/providers/Microsoft.Insights/metrics` with
//! [`METRICS_API_VERSION`] (Azure Monitor's, not Azure ML's), `interval=PT1M` and the
//! bake's `timespan` (its start floored to the minute, to the next minute after now).
//! Deployment metrics are read rather than the endpoint's (split by `deployment`) because
//! they count what reached the deployment, mirrored copies included, so a blue-green's
//! shadow is judged too.
//!
//! # Caveats
//! - Azure Monitor publishes a minute one to three minutes after it ends. Requests served
//!   just now are not counted yet: a canary short of `minRequests` waits for them (up to
//!   `maxBakeTime`), and a threshold crossed in the last minutes is seen on a later poll.
//! - A minute without data has no value (Azure leaves it out); it counts as nothing.

use mlctl_core::url::percent_encode as encode;
use serde_json::Value;

/// The api-version of Azure Monitor's metrics API (`Microsoft.Insights/metrics`), a resource
/// provider of its own beside Azure ML's [`crate::arm::API_VERSION`].
pub const METRICS_API_VERSION: &str = "2024-02-01";

const MINUTE: u64 = 60;

/// The `timespan` of a bake from `since` to `now` (unix seconds): whole minutes, at least one.
pub(crate) fn timespan(since: u64, now: u64) -> String {
    let start = since - since % MINUTE;
    let end = (now.max(since) / MINUTE + 1) * MINUTE;
    format!("{}/{}", rfc3339(start), rfc3339(end))
}

fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The metrics URL (workspace-relative, as [`crate::arm::Arm::id`] takes it) of one metric of
/// `deployment_path` over `timespan`: `aggregation` (`total`, `maximum`), split or filtered by
/// `filter` (`envoy_response_code eq '*'`) when given.
pub(crate) fn query(
    arm_id: &str,
    metric: &str,
    aggregation: &str,
    timespan: &str,
    filter: Option<&str>,
) -> String {
    let mut q = format!(
        "{arm_id}/providers/Microsoft.Insights/metrics?api-version={METRICS_API_VERSION}&metricnames={metric}&aggregation={}&interval=PT1M&timespan={}",
        encode(aggregation),
        encode(timespan)
    );
    if let Some(f) = filter {
        q.push_str("&top=50&%24filter=");
        q.push_str(&encode(f));
    }
    q
}

/// The metric named `metric` of a metrics response, or why it is not there (Azure answers
/// 200 with an `errorCode` other than `Success` for a metric it could not read).
fn metric<'a>(body: &'a Value, metric: &str) -> Result<&'a Value, String> {
    let m = body["value"]
        .as_array()
        .and_then(|v| {
            v.iter().find(|m| {
                m["name"]["value"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(metric))
            })
        })
        .ok_or_else(|| format!("Azure Monitor's answer has no metric {metric}"))?;
    match m["errorCode"].as_str() {
        None | Some("Success") => Ok(m),
        Some(code) => Err(format!(
            "Azure Monitor could not read {metric}: {code}{}",
            m["errorMessage"]
                .as_str()
                .map(|s| format!(" ({})", mlctl_spec::suggest::clip(s, 300)))
                .unwrap_or_default()
        )),
    }
}

/// The value of one data point: its first aggregation of `preferred` that Azure gave,
/// `None` for a minute without data.
fn value(point: &Value, preferred: &[&str]) -> Option<f64> {
    preferred
        .iter()
        .find_map(|a| point.get(*a).and_then(Value::as_f64))
}

/// The aggregations [`requests`] reads, for [`query`].
pub(crate) const REQUESTS_AGGREGATIONS: &str = "total,average";
/// The aggregations [`p99_ms`] reads, for [`query`].
pub(crate) const P99_AGGREGATIONS: &str = "maximum,average";

/// Requests and server errors (5xx) of a `RequestsPerMinute` answer split by
/// `envoy_response_code`, aggregations [`REQUESTS_AGGREGATIONS`].
///
/// # Errors
/// The metric missing from the answer, or failed.
pub(crate) fn requests(body: &Value) -> Result<(u64, u64), String> {
    requests_by(body, "envoy_response_code")
}

/// The same of an endpoint's `RequestsPerMinute` split by `dimension` (`statusCodeClass`:
/// `2xx`, `5xx`; `envoy_response_code`: `200`, `503`): a value starting with `5` is a server
/// error.
///
/// # Errors
/// The metric missing from the answer, or failed.
pub(crate) fn requests_by(body: &Value, dimension: &str) -> Result<(u64, u64), String> {
    let m = metric(body, "RequestsPerMinute")?;
    let (mut all, mut server) = (0.0_f64, 0.0_f64);
    for series in m["timeseries"].as_array().into_iter().flatten() {
        let code = series["metadatavalues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| {
                d["name"]["value"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(dimension))
            })
            .and_then(|d| d["value"].as_str())
            .unwrap_or("");
        let sum: f64 = series["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| value(p, &["total", "average"]))
            .sum();
        all += sum;
        if code.starts_with('5') {
            server += sum;
        }
    }
    Ok((all.round().max(0.0) as u64, server.round().max(0.0) as u64))
}

/// The largest minute's p99 latency (ms) of a `RequestLatency_P99` answer, aggregation
/// [`P99_AGGREGATIONS`]; `None` when no minute has a value.
///
/// # Errors
/// The metric missing from the answer, or failed.
pub(crate) fn p99_ms(body: &Value) -> Result<Option<f64>, String> {
    worst(body, "RequestLatency_P99")
}

/// The largest minute's value of latency metric `name` (`RequestLatency_P50`) in an answer,
/// aggregations [`P99_AGGREGATIONS`]; `None` when no minute has a value.
///
/// # Errors
/// The metric missing from the answer, or failed.
pub(crate) fn worst(body: &Value, name: &str) -> Result<Option<f64>, String> {
    let m = metric(body, name)?;
    Ok(m["timeseries"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["data"].as_array().into_iter().flatten())
        .filter_map(|p| value(p, &["maximum", "average"]))
        .reduce(f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn series(code: Option<&str>, totals: &[Option<f64>]) -> Value {
        let data: Vec<Value> = totals
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Some(t) => json!({"timeStamp": format!("2026-12-02T06:0{i}:00Z"), "total": t}),
                None => json!({"timeStamp": format!("2026-12-02T06:0{i}:00Z")}),
            })
            .collect();
        let meta: Vec<Value> = code
            .map(|c| json!({"name": {"value": "envoy_response_code", "localizedValue": "envoy_response_code"}, "value": c}))
            .into_iter()
            .collect();
        json!({"metadatavalues": meta, "data": data})
    }

    fn answer(name: &str, timeseries: Vec<Value>) -> Value {
        json!({"cost": 0, "interval": "PT1M", "value": [{
            "id": "x", "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": name},
            "unit": "Count", "timeseries": timeseries, "errorCode": "Success"
        }]})
    }

    #[test]
    fn requests_add_every_code_and_minute_and_5xx_are_server_errors() {
        let body = answer(
            "RequestsPerMinute",
            vec![
                series(Some("200"), &[Some(40.0), None, Some(2.0)]),
                series(Some("404"), &[Some(3.0)]),
                series(Some("503"), &[None, Some(5.0)]),
                series(Some("500"), &[Some(1.0)]),
            ],
        );
        assert_eq!(requests(&body), Ok((51, 6)));
    }

    #[test]
    fn a_minute_with_only_an_average_counts_it() {
        let body = answer(
            "RequestsPerMinute",
            vec![
                json!({"metadatavalues": [{"name": {"value": "envoy_response_code"}, "value": "500"}],
                        "data": [{"timeStamp": "t", "average": 7.0}, {"timeStamp": "t", "total": 3.0, "average": 1.5}]}),
            ],
        );
        assert_eq!(requests(&body), Ok((10, 10)));
    }

    #[test]
    fn an_endpoint_split_by_status_class_counts_5xx_as_server_errors() {
        let class = |c: &str, total: f64| {
            json!({"metadatavalues": [{"name": {"value": "statuscodeclass", "localizedValue": "statusCodeClass"}, "value": c}],
                   "data": [{"timeStamp": "t", "total": total}]})
        };
        let body = answer(
            "RequestsPerMinute",
            vec![class("2xx", 90.0), class("4xx", 6.0), class("5xx", 4.0)],
        );
        assert_eq!(requests_by(&body, "statusCodeClass"), Ok((100, 4)));
    }

    #[test]
    fn no_timeseries_is_no_request() {
        assert_eq!(requests(&answer("RequestsPerMinute", vec![])), Ok((0, 0)));
    }

    #[test]
    fn p99_is_the_worst_minute_and_none_without_data() {
        let point = |m: Option<f64>| match m {
            Some(m) => json!({"timeStamp": "t", "maximum": m}),
            None => json!({"timeStamp": "t"}),
        };
        let body = answer(
            "RequestLatency_P99",
            vec![
                json!({"metadatavalues": [], "data": [point(Some(12.5)), point(None), point(Some(80.0))]}),
            ],
        );
        assert_eq!(p99_ms(&body), Ok(Some(80.0)));
        let empty = answer(
            "RequestLatency_P99",
            vec![json!({"metadatavalues": [], "data": [point(None)]})],
        );
        assert_eq!(p99_ms(&empty), Ok(None));
    }

    #[test]
    fn a_metric_azure_could_not_read_or_left_out_is_an_error_naming_it() {
        let mut body = answer("RequestsPerMinute", vec![]);
        body["value"][0]["errorCode"] = json!("Throttled");
        body["value"][0]["errorMessage"] = json!("too many queries");
        let e = requests(&body).unwrap_err();
        assert!(
            e.contains("RequestsPerMinute") && e.contains("Throttled"),
            "{e}"
        );
        let e = p99_ms(&json!({"value": []})).unwrap_err();
        assert!(e.contains("RequestLatency_P99"), "{e}");
    }

    #[test]
    fn the_timespan_is_whole_minutes_around_the_bake() {
        // 2026-12-02T06:00:30Z .. 06:02:10Z
        let since = 1_796_191_230;
        assert_eq!(
            timespan(since, since + 100),
            "2026-12-02T06:00:00Z/2026-12-02T06:03:00Z"
        );
        assert_eq!(
            timespan(since, since),
            "2026-12-02T06:00:00Z/2026-12-02T06:01:00Z"
        );
    }

    #[test]
    fn the_query_names_the_metric_and_encodes_the_filter() {
        let q = query(
            "/subscriptions/s/x/deployments/d",
            "RequestsPerMinute",
            REQUESTS_AGGREGATIONS,
            "2026-12-02T06:00:00Z/2026-12-02T06:03:00Z",
            Some("envoy_response_code eq '*'"),
        );
        assert_eq!(
            q,
            "/subscriptions/s/x/deployments/d/providers/Microsoft.Insights/metrics?api-version=2024-02-01&metricnames=RequestsPerMinute&aggregation=total%2Caverage&interval=PT1M&timespan=2026-12-02T06%3A00%3A00Z%2F2026-12-02T06%3A03%3A00Z&top=50&%24filter=envoy_response_code%20eq%20%27%2A%27"
        );
    }
}
