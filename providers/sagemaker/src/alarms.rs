//! CloudWatch alarms made from an endpoint's rollback thresholds: SageMaker rolls a rollout
//! back when an alarm of its `AutoRollbackConfiguration` fires, and watches nothing else.
//!
//! | spec | alarm `<endpoint>-<variant>-mlctl-...` |
//! |---|---|
//! | `rollback.maxErrorRate` | `error-rate`: metric math `Invocation5XXErrors / Invocations` (Sum over 1 min) above the rate |
//! | `rollback.maxP99LatencyMs` | `p99-latency`: `ModelLatency` p99 over 1 min above the threshold, in microseconds (SageMaker's unit) |
//!
//! Both read namespace `AWS/SageMaker` with dimensions `EndpointName` and `VariantName` of the
//! variant being rolled out, breach on one minute, and treat missing data as not breaching
//! (a variant nobody calls yet is healthy).
//!
//! # Guarantees
//! - Names are deterministic (endpoint and variant), so a re-run finds and updates the alarms
//!   (`PutMetricAlarm` replaces an alarm of the same name), and `delete` finds every one.
//! - Alarms carry the endpoint's tags (mlctl's and the labels), set again on every apply.
//! - The alarms of other variants, or of thresholds that were removed, are deleted on the next
//!   deploy; all of an endpoint's alarms are deleted with the endpoint.

use crate::aws::Aws;
use crate::error::aws_err;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Tag,
};
use mlctl_core::error::Result;
use mlctl_spec::Rollback;

const NAMESPACE: &str = "AWS/SageMaker";
/// Seconds per evaluated datapoint.
const PERIOD: i32 = 60;
const ERROR_RATE: &str = "mlctl-error-rate";
const P99_LATENCY: &str = "mlctl-p99-latency";

/// One alarm mlctl keeps for an endpoint's variant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Threshold {
    /// The alarm's name.
    pub name: String,
    pub kind: ThresholdKind,
}

/// What an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ThresholdKind {
    /// 5XX errors per invocation above this fraction.
    ErrorRate(f64),
    /// p99 model latency above this many milliseconds.
    P99LatencyMs(f64),
}

/// The name of one of mlctl's alarms of `endpoint`'s `variant`.
pub(crate) fn name(endpoint: &str, variant: &str, what: &str) -> String {
    format!("{endpoint}-{variant}-{what}")
}

/// Whether `alarm` is one of mlctl's alarms of `endpoint` (any variant): the names of another
/// endpoint that starts the same (`iris-v2` for `iris`) do not match.
pub(crate) fn is_alarm_of(endpoint: &str, alarm: &str) -> bool {
    let Some(rest) = alarm
        .strip_prefix(endpoint)
        .and_then(|r| r.strip_prefix("-v"))
    else {
        return false;
    };
    let Some((version, what)) = rest.split_once('-') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && (what == ERROR_RATE || what == P99_LATENCY)
}

/// The alarms `rollback` asks for on `endpoint`'s `variant`.
pub(crate) fn wanted(endpoint: &str, variant: &str, rollback: Option<&Rollback>) -> Vec<Threshold> {
    let mut out = Vec::new();
    let Some(r) = rollback else {
        return out;
    };
    if let Some(rate) = r.max_error_rate {
        out.push(Threshold {
            name: name(endpoint, variant, ERROR_RATE),
            kind: ThresholdKind::ErrorRate(rate),
        });
    }
    if let Some(ms) = r.max_p99_latency_ms {
        out.push(Threshold {
            name: name(endpoint, variant, P99_LATENCY),
            kind: ThresholdKind::P99LatencyMs(ms),
        });
    }
    out
}

fn dimensions(endpoint: &str, variant: &str) -> Vec<Dimension> {
    vec![
        Dimension::builder()
            .name("EndpointName")
            .value(endpoint)
            .build(),
        Dimension::builder()
            .name("VariantName")
            .value(variant)
            .build(),
    ]
}

fn sum_of(id: &str, metric: &str, endpoint: &str, variant: &str) -> MetricDataQuery {
    stat_query(id, metric, "Sum", endpoint, variant, PERIOD, false)
}

/// A `MetricStat` query of `endpoint`'s `variant` (namespace `AWS/SageMaker`): `stat` of
/// `metric` per `period` seconds, returned or only an input of an expression.
pub(crate) fn stat_query(
    id: &str,
    metric: &str,
    stat: &str,
    endpoint: &str,
    variant: &str,
    period: i32,
    return_data: bool,
) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(NAMESPACE)
                        .metric_name(metric)
                        .set_dimensions(Some(dimensions(endpoint, variant)))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(return_data)
        .build()
}

/// Creates or updates `alarms` on `endpoint`'s `variant`, tagged with `tags`, and deletes the
/// endpoint's other mlctl alarms (other variants, removed thresholds).
pub(crate) async fn apply(
    aws: &Aws,
    endpoint: &str,
    variant: &str,
    alarms: &[Threshold],
    tags: &[(String, String)],
) -> Result<()> {
    let cw_tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    for a in alarms {
        let put = aws
            .cw
            .put_metric_alarm()
            .alarm_name(&a.name)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .evaluation_periods(1)
            .datapoints_to_alarm(1)
            .treat_missing_data("notBreaching")
            .set_tags(Some(cw_tags.clone()));
        let put = match a.kind {
            ThresholdKind::ErrorRate(rate) => put
                .alarm_description(format!(
                    "mlctl: 5XX errors per invocation of {endpoint}/{variant} above {rate} (rollback.maxErrorRate)"
                ))
                .threshold(rate)
                .metrics(sum_of("errors", "Invocation5XXErrors", endpoint, variant))
                .metrics(sum_of("invocations", "Invocations", endpoint, variant))
                .metrics(
                    MetricDataQuery::builder()
                        .id("rate")
                        .expression("IF(invocations > 0, errors / invocations, 0)")
                        .label("5XX error rate")
                        .return_data(true)
                        .build(),
                ),
            ThresholdKind::P99LatencyMs(ms) => put
                .alarm_description(format!(
                    "mlctl: p99 model latency of {endpoint}/{variant} above {ms} ms (rollback.maxP99LatencyMs)"
                ))
                .namespace(NAMESPACE)
                .metric_name("ModelLatency")
                .set_dimensions(Some(dimensions(endpoint, variant)))
                .extended_statistic("p99")
                .period(PERIOD)
                // ModelLatency is in microseconds.
                .threshold(ms * 1000.0),
        };
        put.send().await.map_err(|e| aws_err("PutMetricAlarm", e))?;
    }
    // PutMetricAlarm ignores the tags of an alarm that exists: set them again.
    let arns = arns(aws, alarms.iter().map(|a| a.name.clone()).collect()).await?;
    for arn in arns {
        aws.cw
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(cw_tags.clone()))
            .send()
            .await
            .map_err(|e| aws_err("TagResource", e))?;
    }
    let stale: Vec<String> = of_endpoint(aws, endpoint)
        .await?
        .into_iter()
        .filter(|n| !alarms.iter().any(|a| &a.name == n))
        .collect();
    delete(aws, stale).await
}

async fn arns(aws: &Aws, names: Vec<String>) -> Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let out = aws
        .cw
        .describe_alarms()
        .set_alarm_names(Some(names))
        .send()
        .await
        .map_err(|e| aws_err("DescribeAlarms", e))?;
    Ok(out
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_arn().map(str::to_string))
        .collect())
}

/// The names of mlctl's alarms of `endpoint`.
pub(crate) async fn of_endpoint(aws: &Aws, endpoint: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = aws
        .cw
        .describe_alarms()
        .alarm_name_prefix(format!("{endpoint}-v"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_err("DescribeAlarms", e))?;
        out.extend(
            page.metric_alarms()
                .iter()
                .filter_map(|a| a.alarm_name())
                .filter(|n| is_alarm_of(endpoint, n))
                .map(str::to_string),
        );
    }
    Ok(out)
}

/// Deletes alarms by name (missing ones are fine), 100 at a time (CloudWatch's limit).
pub(crate) async fn delete(aws: &Aws, names: Vec<String>) -> Result<()> {
    for chunk in names.chunks(100) {
        aws.cw
            .delete_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_err("DeleteAlarms", e))?;
    }
    Ok(())
}

/// Deletes every mlctl alarm of `endpoint`.
pub(crate) async fn delete_all(aws: &Aws, endpoint: &str) -> Result<()> {
    let names = of_endpoint(aws, endpoint).await?;
    delete(aws, names).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_names_are_deterministic_and_per_endpoint() {
        let rb = Rollback {
            max_error_rate: Some(0.05),
            max_p99_latency_ms: Some(100.0),
            alarms: vec!["mine".into()],
        };
        let w = wanted("iris-iris", "v3", Some(&rb));
        assert_eq!(
            w,
            vec![
                Threshold {
                    name: "iris-iris-v3-mlctl-error-rate".into(),
                    kind: ThresholdKind::ErrorRate(0.05)
                },
                Threshold {
                    name: "iris-iris-v3-mlctl-p99-latency".into(),
                    kind: ThresholdKind::P99LatencyMs(100.0)
                },
            ]
        );
        assert!(is_alarm_of("iris-iris", &w[0].name));
        assert!(!is_alarm_of("iris", &w[0].name), "another endpoint's");
        assert!(!is_alarm_of("iris-iris", "iris-iris-v3-someone-elses"));
        assert!(!is_alarm_of("iris-iris", "mine"));
        assert!(wanted("e", "v1", None).is_empty());
    }
}
