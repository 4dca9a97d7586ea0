//! Monitors on SageMaker: the configuration is recorded in S3
//! (`.mlctl/monitors/<project>/<name>.json`) and, where the service implements it
//! ([`crate::Features::monitoring_schedules`]), a SageMaker Model Monitor data-quality
//! schedule watches the endpoint's captured data. Captured records are read from the
//! endpoint's data-capture destination.

use crate::aws::{Aws, parse_s3_uri, sm_tags};
use crate::error::{aws_err, is_not_found, provider_err};
use crate::images::monitor_image;
use crate::names;
use async_trait::async_trait;
use aws_sdk_sagemaker::types::{
    EndpointInput, MonitoringAppSpecification, MonitoringClusterConfig, MonitoringInput,
    MonitoringJobDefinition, MonitoringOutput, MonitoringOutputConfig, MonitoringResources,
    MonitoringS3Output, MonitoringScheduleConfig, MonitoringStoppingCondition, MonitoringType,
    ProcessingInstanceType, ProcessingS3UploadMode, ScheduleConfig,
};
use mlctl_core::error::Result;
use mlctl_core::{
    Capabilities, ErrorKind, Health, MonitorRequest, MonitorSink, MonitorStatus, OpContext,
    components::InPlaceRequest,
};
use mlctl_spec::units::{Schedule, parse_schedule};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const DEFAULT_SCHEDULE: &str = "every 1h";

/// The [`MonitorSink`] of a SageMaker target.
pub struct SageMakerMonitorSink {
    aws: Arc<Aws>,
}

/// What is recorded per monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    name: String,
    endpoint: String,
    schedule: String,
    /// The SageMaker cron expression.
    schedule_expression: String,
    /// The SageMaker monitoring schedule, when one was created.
    monitoring_schedule: Option<String>,
    fingerprint: String,
    baseline: Option<String>,
    spec: serde_json::Value,
}

/// A spec schedule as a SageMaker schedule expression. SageMaker runs monitoring jobs at most
/// hourly, at minute 0.
pub(crate) fn schedule_expression(schedule: &str) -> std::result::Result<String, String> {
    match parse_schedule(schedule)? {
        Schedule::Every(d) => {
            let secs = d.as_secs();
            if secs < 3600 || secs % 3600 != 0 {
                return Err(format!(
                    "SageMaker runs monitoring schedules every whole number of hours (at least hourly); `{schedule}` is not"
                ));
            }
            match secs / 3600 {
                1 => Ok("cron(0 * ? * * *)".into()),
                24 => Ok("cron(0 0 ? * * *)".into()),
                h if h < 24 && 24 % h == 0 => Ok(format!("cron(0 0/{h} ? * * *)")),
                _ => Err(format!(
                    "SageMaker monitoring schedules repeat every 1, 2, 3, 4, 6, 8, 12 or 24 hours; `{schedule}` does not"
                )),
            }
        }
        Schedule::Cron(expr) => {
            let f: Vec<&str> = expr.split_whitespace().collect();
            if f[0] != "0" {
                return Err(format!(
                    "SageMaker monitoring schedules start at minute 0; `{schedule}` starts at minute {}",
                    f[0]
                ));
            }
            let (dom, dow) = match (f[2], f[4]) {
                (dom, "*") => (dom.to_string(), "?".to_string()),
                ("*", dow) => ("?".to_string(), aws_days(dow)?),
                _ => {
                    return Err(format!(
                        "`{schedule}` sets both a day of month and a day of week; SageMaker takes one of them"
                    ));
                }
            };
            Ok(format!("cron(0 {} {dom} {} {dow} *)", f[1], f[3]))
        }
    }
}

/// Cron days of week (0-7, Sunday 0 or 7) in AWS's numbering (1-7, Sunday 1).
fn aws_days(field: &str) -> std::result::Result<String, String> {
    let map = |d: &str| -> std::result::Result<String, String> {
        let n: u32 = d
            .parse()
            .map_err(|_| format!("day of week `{d}` is not a number"))?;
        Ok(((n % 7) + 1).to_string())
    };
    field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Ok(format!("{}-{}", map(a)?, map(b)?)),
            None => map(part),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(|v| v.join(","))
}

impl SageMakerMonitorSink {
    /// `DescribeEndpoint` of SageMaker endpoint `sm_endpoint`; `None` when it does not exist.
    async fn describe(
        &self,
        sm_endpoint: &str,
    ) -> Result<Option<aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput>>
    {
        match self
            .aws
            .sm
            .describe_endpoint()
            .endpoint_name(sm_endpoint)
            .send()
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(aws_err("DescribeEndpoint", e)),
        }
    }

    /// The newest `limit` captured records of `endpoint`, newest first, handed to `each` one
    /// at a time (one capture file in memory at a time); how many were given.
    async fn newest_first(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(serde_json::Value) + Send),
    ) -> Result<u64> {
        let sm_endpoint = names::resource(&ctx.project, endpoint);
        // The live capture destination (the spec may have set its own).
        let dest = self.describe(&sm_endpoint).await?.and_then(|d| {
            d.data_capture_config()
                .and_then(|c| c.destination_s3_uri())
                .map(str::to_string)
        });
        let dest = dest.unwrap_or_else(|| {
            self.aws
                .uri(&self.aws.key(&format!("capture/{sm_endpoint}")))
        });
        let (bucket, prefix) = parse_s3_uri(&dest).ok_or_else(|| {
            provider_err(
                ErrorKind::Invalid,
                "captured",
                format!("`{dest}` is not an s3:// URI"),
            )
        })?;
        // SageMaker writes <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl.
        let mut keys = self
            .aws
            .list_in(
                &bucket,
                &format!("{}/{sm_endpoint}/", prefix.trim_end_matches('/')),
            )
            .await?;
        keys.sort_by(|a, b| {
            let tail = |k: &str| k.splitn(4, '/').nth(3).unwrap_or(k).to_string();
            tail(a).cmp(&tail(b))
        });
        let mut given = 0usize;
        for key in keys.iter().rev() {
            if given >= limit {
                break;
            }
            let Some(bytes) = self.aws.get_from(&bucket, key).await? else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().rev().filter(|l| !l.trim().is_empty()) {
                if given >= limit {
                    break;
                }
                if let Ok(v) = serde_json::from_str(line) {
                    each(v);
                    given += 1;
                }
            }
        }
        Ok(given as u64)
    }

    pub(crate) fn new(aws: Arc<Aws>) -> Self {
        SageMakerMonitorSink { aws }
    }

    fn record_key(&self, project: &str, name: &str) -> String {
        self.aws
            .key(&format!(".mlctl/monitors/{project}/{name}.json"))
    }

    async fn schedule(
        &self,
        ctx: &OpContext,
        req: &MonitorRequest,
        schedule_name: &str,
        expression: &str,
    ) -> Result<()> {
        let endpoint = names::resource(&ctx.project, &req.endpoint.name);
        let image = monitor_image(&self.aws.region).ok_or_else(|| {
            provider_err(
                ErrorKind::NotSupported,
                "CreateMonitoringSchedule",
                format!(
                    "no Model Monitor image is known for region {}",
                    self.aws.region
                ),
            )
        })?;
        let reports = self
            .aws
            .uri(&self.aws.key(&format!("monitoring/{endpoint}/{}", req.name)));
        let input_path = "/opt/ml/processing/input/endpoint";
        let output_path = "/opt/ml/processing/output";
        let definition = MonitoringJobDefinition::builder()
            .monitoring_inputs(
                MonitoringInput::builder()
                    .endpoint_input(
                        EndpointInput::builder()
                            .endpoint_name(&endpoint)
                            .local_path(input_path)
                            .build(),
                    )
                    .build(),
            )
            .monitoring_output_config(
                MonitoringOutputConfig::builder()
                    .monitoring_outputs(
                        MonitoringOutput::builder()
                            .s3_output(
                                MonitoringS3Output::builder()
                                    .s3_uri(reports)
                                    .local_path(output_path)
                                    .s3_upload_mode(ProcessingS3UploadMode::EndOfJob)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .monitoring_resources(
                MonitoringResources::builder()
                    .cluster_config(
                        MonitoringClusterConfig::builder()
                            .instance_count(1)
                            .instance_type(ProcessingInstanceType::MlM5Xlarge)
                            .volume_size_in_gb(20)
                            .build(),
                    )
                    .build(),
            )
            .monitoring_app_specification(
                MonitoringAppSpecification::builder()
                    .image_uri(image)
                    .build(),
            )
            .stopping_condition(
                MonitoringStoppingCondition::builder()
                    .max_runtime_in_seconds(3600)
                    .build(),
            )
            // What the SageMaker Python SDK's DefaultModelMonitor passes the analyzer.
            .environment("dataset_format", r#"{"sagemaker_endpoint": {}}"#)
            .environment("dataset_source", input_path)
            .environment("output_path", output_path)
            .environment("publish_cloudwatch_metrics", "Enabled")
            .role_arn(&self.aws.role_arn)
            .build();
        let config = MonitoringScheduleConfig::builder()
            .schedule_config(
                ScheduleConfig::builder()
                    .schedule_expression(expression)
                    .build(),
            )
            .monitoring_job_definition(definition)
            .monitoring_type(MonitoringType::DataQuality)
            .build();
        let exists = match self
            .aws
            .sm
            .describe_monitoring_schedule()
            .monitoring_schedule_name(schedule_name)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(aws_err("DescribeMonitoringSchedule", e)),
        };
        if exists {
            self.aws
                .sm
                .update_monitoring_schedule()
                .monitoring_schedule_name(schedule_name)
                .monitoring_schedule_config(config)
                .send()
                .await
                .map_err(|e| aws_err("UpdateMonitoringSchedule", e))?;
        } else {
            self.aws
                .sm
                .create_monitoring_schedule()
                .monitoring_schedule_name(schedule_name)
                .monitoring_schedule_config(config)
                .set_tags(Some(sm_tags(
                    &req.tags,
                    &[("mlctl:endpoint", &req.endpoint.name)],
                )))
                .send()
                .await
                .map_err(|e| aws_err("CreateMonitoringSchedule", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl MonitorSink for SageMakerMonitorSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: crate::support::field_rules(),
            poll_interval: self.aws.settings.poll_interval,
            notes: self.aws.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn configure(&self, ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus> {
        let schedule = req
            .spec
            .schedule
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
        let expression = schedule_expression(&schedule).map_err(|m| {
            provider_err(
                ErrorKind::Invalid,
                "CreateMonitoringSchedule",
                format!("monitor `{}`: {m}", req.name),
            )
        })?;
        let schedule_name = names::resource(&ctx.project, &req.name);
        let created = if self.aws.features.monitoring_schedules {
            self.schedule(ctx, req, &schedule_name, &expression).await?;
            Some(schedule_name)
        } else {
            None
        };
        let record = MonitorRecord {
            format_version: Default::default(),
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            schedule: schedule.clone(),
            schedule_expression: expression,
            monitoring_schedule: created,
            fingerprint: req.fingerprint.clone(),
            baseline: req.baseline.as_ref().map(|b| b.uri.clone()),
            spec: serde_json::to_value(&req.spec).unwrap_or_default(),
        };
        self.aws
            .put_json(&self.record_key(&ctx.project, &req.name), &record)
            .await?;
        Ok(MonitorStatus {
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            schedule,
            health: Health::Healthy,
        })
    }

    /// The SLO figures from the endpoint's CloudWatch metrics (namespace `AWS/SageMaker`,
    /// every production variant): `Invocations` and `Invocation5XXErrors` (Sum), and
    /// `ModelLatency` p50 / p99 (microseconds; the model's own latency, without SageMaker's
    /// overhead; the largest variant's) when `slo` bounds them, each over the whole window as
    /// one period. `None` when the endpoint does not exist.
    async fn endpoint_metrics(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        slo: &mlctl_spec::Slo,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> Result<Option<mlctl_core::monitoring::slo::Measured>> {
        let sm_endpoint = names::resource(&ctx.project, endpoint);
        let Some(described) = self.describe(&sm_endpoint).await? else {
            return Ok(None);
        };
        let variants: Vec<String> = described
            .production_variants()
            .iter()
            .filter_map(|v| v.variant_name().map(str::to_string))
            .collect();
        let span = crate::metrics::Span::of(from, to);
        let queries = crate::metrics::slo_queries(&sm_endpoint, &variants, slo, span.period);
        if queries.is_empty() {
            return Ok(None);
        }
        let mut values: Vec<(String, f64)> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .aws
                .cw
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    span.start,
                ))
                .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    span.end,
                ))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_err("GetMetricData", e))?;
            for r in out.metric_data_results() {
                if let Some(id) = r.id() {
                    values.extend(r.values().iter().map(|v| (id.to_string(), *v)));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(Some(crate::metrics::measured(&sm_endpoint, &values, span)))
    }

    async fn captured(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>> {
        let mut newest_first: Vec<serde_json::Value> = Vec::new();
        self.newest_first(ctx, endpoint, limit, &mut |v| newest_first.push(v))
            .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Streams: one capture file in memory at a time, newest first.
    async fn for_each_captured(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(serde_json::Value) + Send),
    ) -> Result<u64> {
        self.newest_first(ctx, endpoint, limit, each).await
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        // The record on S3 keeps no tags; the monitoring schedule, when there is one, does.
        let record: Option<MonitorRecord> = self
            .aws
            .get_json(&self.record_key(&ctx.project, &req.name))
            .await?;
        let Some(schedule) = record.and_then(|r| r.monitoring_schedule) else {
            return Ok(());
        };
        let d = self
            .aws
            .sm
            .describe_monitoring_schedule()
            .monitoring_schedule_name(&schedule)
            .send()
            .await
            .map_err(|e| aws_err("DescribeMonitoringSchedule", e))?;
        let arn = d.monitoring_schedule_arn().unwrap_or_default();
        self.aws.retag(arn, &req.tags, &req.removed_labels).await
    }

    async fn remove(&self, ctx: &OpContext, name: &str) -> Result<()> {
        if self.aws.features.monitoring_schedules {
            let schedule_name = names::resource(&ctx.project, name);
            match self
                .aws
                .sm
                .delete_monitoring_schedule()
                .monitoring_schedule_name(&schedule_name)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(aws_err("DeleteMonitoringSchedule", e)),
            }
        }
        self.aws.delete(&self.record_key(&ctx.project, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_become_sagemaker_cron() {
        assert_eq!(
            schedule_expression("every 1h").unwrap(),
            "cron(0 * ? * * *)"
        );
        assert_eq!(
            schedule_expression("every 6h").unwrap(),
            "cron(0 0/6 ? * * *)"
        );
        assert_eq!(
            schedule_expression("every 1d").unwrap(),
            "cron(0 0 ? * * *)"
        );
        assert_eq!(
            schedule_expression("0 3 * * *").unwrap(),
            "cron(0 3 * * ? *)"
        );
        assert_eq!(
            schedule_expression("0 3 * * 1-5").unwrap(),
            "cron(0 3 ? * 2-6 *)"
        );
        assert!(
            schedule_expression("every 15m")
                .unwrap_err()
                .contains("hours")
        );
        assert!(
            schedule_expression("30 * * * *")
                .unwrap_err()
                .contains("minute 0")
        );
        assert!(schedule_expression("every 5h").is_err());
    }
}
