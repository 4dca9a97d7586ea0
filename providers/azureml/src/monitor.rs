//! Monitors on Azure ML: the configuration is recorded as a blob
//! (`.mlctl/monitors/<project>/<name>.json` in the target's storage), and the captured
//! traffic is what the deployments' data collector wrote under `capture/<endpoint>/`.
//!
//! The data collector writes one JSON line per request and collection, in hourly folders:
//!
//! ```text
//! capture/<endpoint>/model_inputs/<yyyy>/<MM>/<dd>/<HH>/<file>.jsonl
//! capture/<endpoint>/model_outputs/<yyyy>/<MM>/<dd>/<HH>/<file>.jsonl
//! ```
//!
//! each line `{"specversion":"1.0","id":...,"source":"/subscriptions/.../onlineEndpoints/<e>/deployments/<d>",
//! "type":"azureml.inference.model_inputs","time":"...","data":[{"col":value,...},...],
//! "correlationid":"...","xrequestid":"...","modelversion":"<n>"}`. [`AzureMonitorSink::captured`]
//! reads the newest folders first until it has `limit` requests, joins each request's
//! `model_inputs` and `model_outputs` lines by `correlationid`, and returns them in mlctl's
//! own capture format (what every target's monitor evaluation and `mlctl monitor feedback`
//! read): `{"time","requestId","model","version","variant","columns","rows","predictions"}`,
//! the request id being the `x-request-id` the caller was answered with. `mlctl monitor run`
//! streams them instead ([`AzureMonitorSink::stream`]): one hour of inputs at a time, joined
//! with the outputs of that hour and of the next later one, so the window is never in memory.
//! An output written more than that after its input's hour is not joined (the request
//! counts without a prediction).
//!
//! # SLOs
//! The data collector records neither the status nor the latency of a request, so SLOs are
//! judged on the online endpoint's Azure Monitor metrics instead
//! ([`AzureMonitorSink::endpoint_metrics`]): every request of the window, not the capture's
//! sample. Azure publishes a minute 1-3 minutes after it ends, so the newest requests of the
//! window are not in them yet.

use crate::azure::Azure;
use crate::deployer::endpoint_name;
use crate::insights;
use async_trait::async_trait;
use mlctl_core::error::Result;
use mlctl_core::support::{FieldRules, Support};
use mlctl_core::{
    Capabilities, ErrorKind, Health, MonitorRequest, MonitorSink, MonitorStatus, OpContext,
    ProviderError, components::InPlaceRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const PROVIDER: &str = "azureml";
/// `mlctl monitor run --due`'s schedule when the spec sets none.
const DEFAULT_SCHEDULE: &str = "every 1h";
/// The data collector's collections mlctl reads.
pub(crate) const INPUTS: &str = "model_inputs";
pub(crate) const OUTPUTS: &str = "model_outputs";

fn err(kind: ErrorKind, op: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(kind, PROVIDER, op, message)
}

/// What is recorded per monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MonitorRecord {
    /// Format of this record (`mlctl_core::state::FORMAT_VERSION` when written).
    #[serde(default = "mlctl_core::state::FormatVersion::legacy")]
    format_version: mlctl_core::state::FormatVersion,
    name: String,
    /// The mlctl endpoint watched.
    endpoint: String,
    /// Where its capture is read (`capture/<azure endpoint>/`).
    capture: String,
    schedule: String,
    fingerprint: String,
    baseline: Option<String>,
    /// The monitor's tags (a monitor is no Azure resource: they live here).
    #[serde(default)]
    tags: BTreeMap<String, String>,
    spec: Value,
}

// ---------------------------------------------------------------------------------------------
// Reading the data collector's files

/// Where a capture blob sits: its collection and its hour folder (`yyyy/MM/dd/HH`), read
/// from its name; `None` for a blob that is not in the data collector's layout.
pub(crate) fn capture_hour(key: &str) -> Option<(&'static str, String)> {
    let key = format!("/{}", key.trim_start_matches('/'));
    for collection in [INPUTS, OUTPUTS] {
        let marker = format!("/{collection}/");
        let Some(at) = key.rfind(&marker) else {
            continue;
        };
        let parts: Vec<&str> = key[at + marker.len()..].split('/').collect();
        let widths = [4, 2, 2, 2];
        let dated = parts.len() == 5
            && !parts[4].is_empty()
            && parts[..4]
                .iter()
                .zip(widths)
                .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()));
        return dated.then(|| (collection, parts[..4].join("/")));
    }
    None
}

/// One line of a data collector file.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CaptureLine {
    /// When it was served (RFC 3339).
    pub time: Option<String>,
    /// What joins a request's inputs and outputs.
    pub correlation_id: String,
    /// The `x-request-id` the caller was answered with.
    pub request_id: Option<String>,
    /// The deployment (the last segment of `source`).
    pub deployment: Option<String>,
    /// The model version the deployment serves.
    pub model_version: Option<String>,
    /// The rows (each a JSON object of column to value, as the collector wrote it).
    pub data: Vec<Value>,
}

/// The lines of a data collector file; a line that is not a capture event (blank, cut
/// short, without `data`) is skipped.
pub(crate) fn parse_capture(text: &str) -> Vec<CaptureLine> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let data = match &v["data"] {
                Value::Array(rows) => rows.clone(),
                // Some collector versions write the rows as a JSON string.
                Value::String(s) => match serde_json::from_str::<Value>(s).ok()? {
                    Value::Array(rows) => rows,
                    one @ Value::Object(_) => vec![one],
                    _ => return None,
                },
                one @ Value::Object(_) => vec![one.clone()],
                _ => return None,
            };
            let text = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
            let correlation_id = text("correlationid").or_else(|| text("id"))?;
            Some(CaptureLine {
                time: text("time"),
                correlation_id,
                request_id: text("xrequestid"),
                deployment: text("source").and_then(|s| {
                    s.rsplit_once("/deployments/")
                        .map(|(_, d)| d.trim_end_matches('/').to_string())
                }),
                model_version: text("modelversion"),
                data,
            })
        })
        .collect()
}

/// A prediction from one row of `model_outputs`: the value of a one-column row, else the
/// `prediction`/`predictions` column's, else the row.
fn prediction(row: &Value) -> Value {
    match row {
        Value::Object(o) if o.len() == 1 => o.values().next().cloned().unwrap_or(Value::Null),
        Value::Object(o) => o
            .get("prediction")
            .or_else(|| o.get("predictions"))
            .cloned()
            .unwrap_or_else(|| row.clone()),
        other => other.clone(),
    }
}

/// The columns of a request's rows (in the order they first appear) and each row's values.
fn table(rows: &[Value]) -> (Vec<String>, Vec<Value>) {
    let mut columns: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(o) = r {
            for k in o.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let values = rows
        .iter()
        .map(|r| match r {
            Value::Object(o) => Value::Array(
                columns
                    .iter()
                    .map(|c| o.get(c).cloned().unwrap_or(Value::Null))
                    .collect(),
            ),
            Value::Array(_) => r.clone(),
            other => Value::Array(vec![other.clone()]),
        })
        .collect();
    (columns, values)
}

/// Requests in mlctl's capture format: each `model_inputs` line with the `model_outputs`
/// line of the same `correlationid` (its predictions; none when the output is not found),
/// `models` naming the mlctl model each deployment serves. Oldest first (by `time`, then
/// as given), the newest `limit` of them.
pub(crate) fn join(
    inputs: &[CaptureLine],
    outputs: &[CaptureLine],
    models: &BTreeMap<String, String>,
    limit: usize,
) -> Vec<Value> {
    let by_id: HashMap<&str, &CaptureLine> = outputs
        .iter()
        .map(|o| (o.correlation_id.as_str(), o))
        .collect();
    let mut out: Vec<(Option<String>, Value)> = inputs
        .iter()
        .map(|i| {
            let (columns, rows) = table(&i.data);
            let mut r = Map::new();
            if let Some(t) = &i.time {
                r.insert("time".into(), json!(t));
            }
            r.insert(
                "requestId".into(),
                json!(i.request_id.as_deref().unwrap_or(&i.correlation_id)),
            );
            r.insert("correlationId".into(), json!(i.correlation_id));
            let deployment = i.deployment.clone().unwrap_or_default();
            r.insert(
                "model".into(),
                json!(models.get(&deployment).cloned().unwrap_or_default()),
            );
            r.insert(
                "version".into(),
                json!(i.model_version.clone().unwrap_or_default()),
            );
            r.insert("variant".into(), json!(deployment));
            r.insert("columns".into(), json!(columns));
            r.insert("rows".into(), Value::Array(rows));
            if let Some(o) = by_id.get(i.correlation_id.as_str()) {
                r.insert(
                    "predictions".into(),
                    Value::Array(o.data.iter().map(prediction).collect()),
                );
            }
            (i.time.clone(), Value::Object(r))
        })
        .collect();
    // RFC 3339 times of one writer (UTC, `Z`) sort as text.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = out.len().saturating_sub(limit);
    out.into_iter().skip(skip).map(|(_, v)| v).collect()
}

/// Capture blobs newest hour first (then by name, newest first), those outside the layout
/// left out.
pub(crate) fn newest_first(keys: &[String], collection: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = keys
        .iter()
        .filter_map(|k| {
            let (c, hour) = capture_hour(k)?;
            (c == collection).then(|| (hour, k.clone()))
        })
        .collect();
    v.sort();
    v.reverse();
    v
}

/// The output hours whose lines the inputs of `hour` are joined with: `hour` itself and the
/// next later hour that has outputs (a request's output is written in its input's hour or
/// just after). `output_hours` newest first.
pub(crate) fn output_hours_for<'h>(hour: &str, output_hours: &'h [String]) -> Vec<&'h str> {
    let mut out: Vec<&str> = output_hours
        .iter()
        .filter(|h| h.as_str() == hour)
        .map(String::as_str)
        .collect();
    if let Some(next) = output_hours.iter().filter(|h| h.as_str() > hour).min() {
        out.push(next);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The sink

/// The [`MonitorSink`] of an Azure ML target.
pub struct AzureMonitorSink {
    az: Arc<Azure>,
}

impl AzureMonitorSink {
    pub(crate) fn new(az: Arc<Azure>) -> Self {
        AzureMonitorSink { az }
    }

    fn record_key(&self, project: &str, name: &str) -> String {
        self.az
            .blob
            .key(&format!(".mlctl/monitors/{project}/{name}.json"))
    }

    async fn read_record(&self, project: &str, name: &str) -> Result<Option<MonitorRecord>> {
        let key = self.record_key(project, name);
        match self.az.blob.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                err(
                    ErrorKind::Invalid,
                    "read monitor",
                    format!("the record of monitor `{name}` ({key}) is unreadable: {e}; apply the monitor again to rewrite it"),
                )
            }),
        }
    }

    async fn write_record(&self, project: &str, record: &MonitorRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| err(ErrorKind::Invalid, "write monitor", e.to_string()))?;
        self.az
            .blob
            .put(
                &self.record_key(project, &record.name),
                bytes,
                "application/json",
            )
            .await
    }

    /// The deployments of Azure endpoint `azure` and the model each serves.
    async fn models(&self, azure: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .az
            .arm
            .list(&format!("onlineEndpoints/{azure}/deployments"))
            .await?
            .iter()
            .filter_map(|d| {
                Some((
                    d["name"].as_str()?.to_string(),
                    d["tags"]["mlctl:model"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// The lines of the blobs `keys`, in order.
    async fn read_lines(&self, keys: &[&str]) -> Result<Vec<CaptureLine>> {
        let mut lines = Vec::new();
        for key in keys {
            if let Some(bytes) = self.az.blob.get(key).await? {
                lines.extend(parse_capture(&String::from_utf8_lossy(&bytes)));
            }
        }
        Ok(lines)
    }

    /// The newest `limit` joined requests of endpoint `endpoint`, handed to `each` one hour
    /// of inputs at a time, newest hour first: in memory are that hour's inputs and the
    /// outputs of it and of the next later hour ([`output_hours_for`]), never the window.
    async fn stream(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(Value) + Send),
    ) -> Result<u64> {
        let azure = endpoint_name(&self.az.target, &ctx.project, endpoint);
        let prefix = self.az.blob.key(&format!("capture/{azure}/"));
        let inputs = newest_first(
            &self.az.blob.list(&format!("{prefix}{INPUTS}/")).await?,
            INPUTS,
        );
        if inputs.is_empty() || limit == 0 {
            return Ok(0);
        }
        let outputs = newest_first(
            &self.az.blob.list(&format!("{prefix}{OUTPUTS}/")).await?,
            OUTPUTS,
        );
        let mut output_hours: Vec<String> = outputs.iter().map(|(h, _)| h.clone()).collect();
        output_hours.dedup();
        let models = self.models(&azure).await?;
        let mut cached: BTreeMap<String, Vec<CaptureLine>> = BTreeMap::new();
        let mut given = 0usize;
        let mut at = 0;
        while at < inputs.len() && given < limit {
            let hour = inputs[at].0.clone();
            let mut keys: Vec<&str> = Vec::new();
            while at < inputs.len() && inputs[at].0 == hour {
                keys.push(&inputs[at].1);
                at += 1;
            }
            // Files of an hour are newest first; lines are read oldest first.
            keys.reverse();
            let lines = self.read_lines(&keys).await?;
            let needed = output_hours_for(&hour, &output_hours);
            cached.retain(|h, _| needed.contains(&h.as_str()));
            for h in &needed {
                if !cached.contains_key(*h) {
                    let mut keys: Vec<&str> = outputs
                        .iter()
                        .filter(|(oh, _)| oh == h)
                        .map(|(_, k)| k.as_str())
                        .collect();
                    keys.reverse();
                    cached.insert(h.to_string(), self.read_lines(&keys).await?);
                }
            }
            let joined_outputs: Vec<CaptureLine> = cached.values().flatten().cloned().collect();
            for record in join(&lines, &joined_outputs, &models, limit - given)
                .into_iter()
                .rev()
            {
                each(record);
                given += 1;
            }
        }
        Ok(given as u64)
    }

    /// The lines of a collection, newest hour first, until `enough` says stop; returns the
    /// lines and the oldest hour read.
    async fn read_collection(
        &self,
        prefix: &str,
        collection: &str,
        since_hour: Option<&str>,
        enough: impl Fn(usize) -> bool,
    ) -> Result<(Vec<CaptureLine>, Option<String>)> {
        let keys = self.az.blob.list(&format!("{prefix}{collection}/")).await?;
        let mut lines: Vec<CaptureLine> = Vec::new();
        let mut oldest = None;
        for (hour, key) in newest_first(&keys, collection) {
            if since_hour.is_some_and(|s| hour.as_str() < s) || enough(lines.len()) {
                break;
            }
            let Some(bytes) = self.az.blob.get(&key).await? else {
                continue;
            };
            let mut file = parse_capture(&String::from_utf8_lossy(&bytes));
            file.append(&mut lines);
            lines = file;
            oldest = Some(hour);
        }
        Ok((lines, oldest))
    }
}

#[async_trait]
impl MonitorSink for AzureMonitorSink {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fields: field_rules(),
            monitor_status: true,
            poll_interval: self.az.settings.poll_interval,
            notes: self.az.features.notes(),
            ..Capabilities::default()
        }
    }

    async fn configure(&self, ctx: &OpContext, req: &MonitorRequest) -> Result<MonitorStatus> {
        let schedule = req
            .spec
            .schedule
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULE.to_string());
        let endpoint = endpoint_name(&self.az.target, &ctx.project, &req.endpoint.name);
        let record = MonitorRecord {
            format_version: Default::default(),
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            capture: self.az.blob.key(&format!("capture/{endpoint}/")),
            schedule: schedule.clone(),
            fingerprint: req.fingerprint.clone(),
            baseline: req.baseline.as_ref().map(|b| b.uri.clone()),
            tags: req.tags.to_map(),
            spec: serde_json::to_value(&req.spec).unwrap_or_default(),
        };
        self.write_record(&ctx.project, &record).await?;
        Ok(MonitorStatus {
            name: req.name.clone(),
            endpoint: req.endpoint.name.clone(),
            schedule,
            health: Health::Healthy,
        })
    }

    /// The SLO figures from Azure Monitor's metrics of the online endpoint
    /// ([`crate::insights`]): its requests and 5xx answers (`RequestsPerMinute` by
    /// `statusCodeClass`) and the worst minute's `RequestLatency_P50` / `_P99`, over every
    /// deployment. `None` when the endpoint does not exist.
    async fn endpoint_metrics(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        slo: &mlctl_spec::Slo,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> Result<Option<mlctl_core::monitoring::slo::Measured>> {
        let azure = endpoint_name(&self.az.target, &ctx.project, endpoint);
        let id = self.az.arm.id(&format!("onlineEndpoints/{azure}"));
        let (since, now) = (
            from.unix_timestamp().max(0) as u64,
            to.unix_timestamp().max(0) as u64,
        );
        let span = insights::timespan(since, now);
        let unread = |m: String| err(ErrorKind::Transient, "endpoint metrics", m);
        let Some(requests) = self
            .az
            .arm
            .get_url(&insights::query(
                &id,
                "RequestsPerMinute",
                insights::REQUESTS_AGGREGATIONS,
                &span,
                Some("statusCodeClass eq '*'"),
            ))
            .await?
        else {
            return Ok(None);
        };
        let (requests, server_errors) =
            insights::requests_by(&requests, "statusCodeClass").map_err(unread)?;
        let (mut p50_ms, mut p99_ms) = (None, None);
        if slo.p50_latency_ms.is_some() || slo.p99_latency_ms.is_some() {
            let latency = self
                .az
                .arm
                .get_url(&insights::query(
                    &id,
                    "RequestLatency_P50,RequestLatency_P99",
                    insights::P99_AGGREGATIONS,
                    &span,
                    None,
                ))
                .await?
                .unwrap_or_default();
            p50_ms = insights::worst(&latency, "RequestLatency_P50").map_err(unread)?;
            p99_ms = insights::worst(&latency, "RequestLatency_P99").map_err(unread)?;
        }
        Ok(Some(mlctl_core::monitoring::slo::Measured {
            requests,
            server_errors,
            p50_ms,
            p99_ms,
            seconds: now.saturating_sub(since) as f64,
            source: format!(
                "every request of online endpoint {azure} from Azure Monitor's metrics, not the capture: RequestsPerMinute by statusCodeClass; the latencies are the worst minute's RequestLatency_P50 / _P99 (an upper bound); Azure publishes a minute 1-3 minutes after it ends"
            ),
        }))
    }

    async fn captured(&self, ctx: &OpContext, endpoint: &str, limit: usize) -> Result<Vec<Value>> {
        let azure = endpoint_name(&self.az.target, &ctx.project, endpoint);
        let prefix = self.az.blob.key(&format!("capture/{azure}/"));
        let (inputs, oldest) = self
            .read_collection(&prefix, INPUTS, None, |n| n >= limit)
            .await?;
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        // A request's output is written in its input's hour or a later one.
        let (outputs, _) = self
            .read_collection(&prefix, OUTPUTS, oldest.as_deref(), |_| false)
            .await?;
        let models = self.models(&azure).await?;
        Ok(join(&inputs, &outputs, &models, limit))
    }

    /// Streams the requests an hour of capture at a time ([`AzureMonitorSink::stream`]).
    async fn for_each_captured(
        &self,
        ctx: &OpContext,
        endpoint: &str,
        limit: usize,
        each: &mut (dyn FnMut(Value) + Send),
    ) -> Result<u64> {
        self.stream(ctx, endpoint, limit, each).await
    }

    async fn remove(&self, ctx: &OpContext, name: &str) -> Result<()> {
        self.az
            .blob
            .delete(&self.record_key(&ctx.project, name))
            .await
    }

    async fn update_in_place(&self, ctx: &OpContext, req: &InPlaceRequest) -> Result<()> {
        let Some(mut record) = self.read_record(&ctx.project, &req.name).await? else {
            return Err(err(
                ErrorKind::NotFound,
                "update monitor tags",
                format!(
                    "monitor `{}` has no record in the target's storage; run `mlctl apply` with a change that configures it again",
                    req.name
                ),
            ));
        };
        for k in &req.removed_labels {
            record.tags.remove(k);
        }
        record.tags.extend(req.tags.to_map());
        self.write_record(&ctx.project, &record).await
    }

    async fn status(&self, ctx: &OpContext, name: &str) -> Result<Option<MonitorStatus>> {
        Ok(self
            .read_record(&ctx.project, name)
            .await?
            .map(|r| MonitorStatus {
                name: r.name,
                endpoint: r.endpoint,
                schedule: r.schedule,
                health: Health::Healthy,
            }))
    }
}

/// The Monitor kind's declarations on an azureml target (drift, quality, the schedule and
/// `onBreach` are the engine's, judged by `mlctl monitor run`).
pub(crate) fn field_rules() -> FieldRules {
    let mut r = FieldRules::new().with(
        "Monitor.metadata.labels",
        Support::honoured_as(
            "recorded with the monitor's record in the target's storage (a monitor is no Azure resource); a change rewrites it in place",
        ),
    );
    for slo in mlctl_spec::quality::SLOS {
        r = r.with(
            &format!("Monitor.spec.slo.{}", slo.field),
            Support::honoured_as(
                "judged by `mlctl monitor run` on the online endpoint's Azure Monitor metrics over the window (every request, not the capture, whose records have no status or latency): RequestsPerMinute by statusCodeClass for the error rate and throughput, the worst minute's RequestLatency_P50 / _P99 for the latencies",
            ),
        );
    }
    r
}
