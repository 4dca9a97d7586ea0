//! Capture through Azure ML's data collector (MDC), for `mlctl serve` in an Azure ML online
//! deployment whose `dataCollector` collects `model_inputs` and `model_outputs`.
//!
//! Azure runs the collector as an agent beside the serving container; serving code hands it
//! each collection's rows and the agent writes them to blob storage, in the hourly JSON-lines
//! layout that mlctl's azureml monitors read (`capture/<endpoint>/model_inputs/yyyy/MM/dd/HH/`).
//! mlctl speaks the agent's protocol as Microsoft's own client does (PyPI
//! `azureml-ai-monitoring` 1.0.0, `Collector.collect`, read for this):
//!
//! - configuration from the environment the platform sets: `AZUREML_MDC_CONFIG_PATH` (JSON,
//!   `{"collections": {"model_inputs": {"enabled": true, "sampleRatePercentage": 100}, ...}}`,
//!   names compared without case), else the legacy `AZUREML_MDC_ENABLED=true` with
//!   `AZUREML_MDC_SAMPLE_RATE`; the agent at `AZUREML_MDC_HOST` (default 127.0.0.1) and
//!   `AZUREML_MDC_PORT` (default 50011);
//! - one `POST /modeldata/log` per collection and request, `Content-Type: application/json`,
//!   the rows as a DataFrame's `to_json(orient="records")` (`[{"col": value, ...}, ...]`;
//!   the predictions as `[{"prediction": value}, ...]`), and the headers `trace-id` (unique
//!   per payload), `ce-time` (Unix seconds), `ce-type` (`azureml.inference.<collection>`),
//!   `ce-collect-data-type` (`pandas.core.frame.DataFrame`), `ce-agent`, `ce-x-request-id`
//!   (the request's id, what joins its inputs and outputs, answered to the caller as
//!   `x-request-id`) and `ce-model-version`.
//!
//! Sampling is the collections' `sampleRatePercentage` (one decision per request, so a
//! request's inputs and outputs are collected together). Requests the model could not answer
//! have no rows and are not sent (Azure Monitor counts them). A payload the agent does not
//! take after one retry on a new connection is dropped and counted
//! (`mlctl_capture_dropped_total`), never waited for by a request.

use super::{Clock, Queue, Record};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// Where the data collector's agent listens, and what it collects.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MdcConfig {
    /// The agent's host.
    pub host: String,
    /// The agent's port.
    pub port: u16,
    /// Whether `model_inputs` is collected.
    pub inputs: bool,
    /// Whether `model_outputs` is collected.
    pub outputs: bool,
    /// Share of requests collected, 0..=100.
    pub percent: f64,
}

/// The agent's default port (`azureml-ai-monitoring`'s).
pub const DEFAULT_PORT: u16 = 50011;

impl MdcConfig {
    /// The data collector's configuration from the environment (`var` reads a variable);
    /// `Ok(None)` when the deployment collects neither `model_inputs` nor `model_outputs`.
    ///
    /// # Errors
    /// A configuration file that cannot be read or is not JSON, or a port that is not one.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<MdcConfig>, String> {
        let host = var("AZUREML_MDC_HOST")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = match var("AZUREML_MDC_PORT").filter(|p| !p.is_empty()) {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("AZUREML_MDC_PORT is `{p}`, not a port"))?,
            None => DEFAULT_PORT,
        };
        if let Some(path) = var("AZUREML_MDC_CONFIG_PATH").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!("cannot read the data collector's configuration {path} (AZUREML_MDC_CONFIG_PATH): {e}")
            })?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                format!("the data collector's configuration {path} is not JSON: {e}")
            })?;
            let mut inputs = None;
            let mut outputs = None;
            if let Some(c) = v.get("collections").and_then(|c| c.as_object()) {
                for (name, c) in c {
                    if !c.get("enabled").and_then(|e| e.as_bool()).unwrap_or(false) {
                        continue;
                    }
                    let rate = c
                        .get("sampleRatePercentage")
                        .and_then(|r| r.as_f64())
                        .unwrap_or(100.0);
                    match name.to_ascii_lowercase().as_str() {
                        INPUTS => inputs = Some(rate),
                        OUTPUTS => outputs = Some(rate),
                        _ => {}
                    }
                }
            }
            if inputs.is_none() && outputs.is_none() {
                return Ok(None);
            }
            return Ok(Some(MdcConfig {
                host,
                port,
                inputs: inputs.is_some(),
                outputs: outputs.is_some(),
                percent: inputs.or(outputs).unwrap_or(100.0).clamp(0.0, 100.0),
            }));
        }
        if var("AZUREML_MDC_ENABLED").is_some_and(|e| e.eq_ignore_ascii_case("true")) {
            let percent = match var("AZUREML_MDC_SAMPLE_RATE").filter(|r| !r.is_empty()) {
                Some(r) => r
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("AZUREML_MDC_SAMPLE_RATE is `{r}`, not a number"))?,
                None => 100.0,
            };
            return Ok(Some(MdcConfig {
                host,
                port,
                inputs: true,
                outputs: true,
                percent: percent.clamp(0.0, 100.0),
            }));
        }
        Ok(None)
    }
}

/// The collection of a request's rows.
pub const INPUTS: &str = "model_inputs";
/// The collection of a request's predictions.
pub const OUTPUTS: &str = "model_outputs";

/// A record's two payloads (`model_inputs`, `model_outputs`) as the agent takes them, from
/// its JSON object (`super::record_value`); `None` for a record without rows.
pub fn payloads(record: &serde_json::Value) -> Option<(String, String)> {
    use serde_json::{Map, Value};
    let columns = record.get("columns")?.as_array()?;
    let rows = record.get("rows")?.as_array()?;
    let inputs: Vec<Value> = rows
        .iter()
        .map(|row| {
            let values = row.as_array().map(Vec::as_slice).unwrap_or_default();
            Value::Object(
                columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| (c.as_str().unwrap_or_default().to_string(), v.clone()))
                    .collect::<Map<_, _>>(),
            )
        })
        .collect();
    let outputs: Vec<Value> = record
        .get("predictions")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .map(|y| serde_json::json!({"prediction": y}))
                .collect()
        })
        .unwrap_or_default();
    Some((
        Value::Array(inputs).to_string(),
        Value::Array(outputs).to_string(),
    ))
}

/// A keep-alive HTTP/1.1 connection to the agent.
struct Agent {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl Agent {
    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        use std::net::ToSocketAddrs;
        let addr = self.addr.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the agent")
        })?;
        let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        let _ = s.set_nodelay(true);
        Ok(BufReader::new(s))
    }

    /// POSTs one payload; the agent's status.
    fn post_once(&mut self, head: &str, body: &[u8]) -> std::io::Result<u16> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut req = Vec::with_capacity(head.len() + body.len() + 64);
        req.extend_from_slice(head.as_bytes());
        let _ = write!(req, "Content-Length: {}\r\n\r\n", body.len());
        req.extend_from_slice(body);
        conn.get_mut().write_all(&req)?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
            })?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                close = true;
                break;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<u64>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                std::io::copy(&mut conn.by_ref().take(size + 2), &mut std::io::sink())?;
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            std::io::copy(&mut conn.by_ref().take(n), &mut std::io::sink())?;
        } else {
            // Neither: the body runs to the end of the connection.
            std::io::copy(conn, &mut std::io::sink())?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok(status)
    }

    /// POSTs one payload, once more on a new connection when the first attempt fails.
    fn post(&mut self, head: &str, body: &[u8]) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..2 {
            match self.post_once(head, body) {
                Ok(s) if (200..300).contains(&s) => return Ok(()),
                Ok(s) => {
                    last = format!("the data collector answered {s}");
                    if s < 500 && s != 429 {
                        break;
                    }
                }
                Err(e) => {
                    self.conn = None;
                    last = format!("cannot reach the data collector at {}: {e}", self.addr);
                }
            }
        }
        Err(last)
    }
}

/// The head of a payload's request (without its length).
fn head(
    addr: &str,
    collection: &str,
    trace: &str,
    time: u64,
    request_id: &str,
    version: &str,
) -> String {
    let mut h = format!(
        "POST /modeldata/log HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nContent-Type: application/json\r\ntrace-id: {trace}\r\nce-time: {time}\r\nce-type: azureml.inference.{collection}\r\nce-collect-data-type: pandas.core.frame.DataFrame\r\nce-agent: mlctl/{}\r\nce-x-request-id: {request_id}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if !version.is_empty() {
        h.push_str(&format!("ce-model-version: {version}\r\n"));
    }
    h
}

/// The sender: takes the queued records every batch period and hands each to the agent.
pub(super) fn run(config: MdcConfig, queue: &Queue, dropped: Arc<AtomicU64>) {
    let addr = format!("{}:{}", config.host, config.port);
    let mut agent = Agent {
        addr: addr.clone(),
        conn: None,
    };
    let mut clock = Clock::default();
    let mut batch: Vec<Record> = Vec::with_capacity(1024);
    let mut trace = 0u64;
    let prefix = format!(
        "{:x}-{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        std::process::id()
    );
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let closed = queue.closed.load(Relaxed);
        queue.take(&mut batch);
        for rec in &batch {
            let value = super::record_value(&rec.view(), &mut clock);
            let Some((inputs, outputs)) = payloads(&value) else {
                continue;
            };
            let time = rec
                .time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let id = rec.request_id.to_str().unwrap_or_default();
            let sends = [
                (config.inputs, INPUTS, inputs),
                (config.outputs, OUTPUTS, outputs),
            ];
            for (on, collection, body) in sends {
                if !on {
                    continue;
                }
                trace += 1;
                let h = head(
                    &addr,
                    collection,
                    &format!("{prefix}-{trace:x}"),
                    time,
                    id,
                    &rec.source.version,
                );
                if let Err(e) = agent.post(&h, body.as_bytes()) {
                    dropped.fetch_add(1, Relaxed);
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        last_warning = Some(std::time::Instant::now());
                        tracing::warn!("capture: a record was dropped: {e}");
                    }
                }
            }
        }
        batch.clear();
        if closed {
            break;
        }
        std::thread::sleep(super::BATCH_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_configuration_is_what_azureml_ai_monitoring_reads() {
        assert_eq!(MdcConfig::from_env(env(&[])).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mdc.json");
        std::fs::write(
            &path,
            r#"{"collections": {"Model_Inputs": {"enabled": true, "sampleRatePercentage": 25}, "model_outputs": {"enabled": true}, "request": {"enabled": true}}, "runMode": "cloud"}"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            MdcConfig::from_env(env(&[
                ("AZUREML_MDC_CONFIG_PATH", p),
                ("AZUREML_MDC_PORT", "6000")
            ]))
            .unwrap(),
            Some(MdcConfig {
                host: "127.0.0.1".into(),
                port: 6000,
                inputs: true,
                outputs: true,
                percent: 25.0,
            })
        );
        std::fs::write(
            &path,
            r#"{"collections": {"model_inputs": {"enabled": false}}}"#,
        )
        .unwrap();
        assert_eq!(
            MdcConfig::from_env(env(&[("AZUREML_MDC_CONFIG_PATH", p)])).unwrap(),
            None
        );
        std::fs::write(&path, "{not json").unwrap();
        let e = MdcConfig::from_env(env(&[("AZUREML_MDC_CONFIG_PATH", p)])).unwrap_err();
        assert!(e.contains("is not JSON"), "{e}");
        let legacy = MdcConfig::from_env(env(&[
            ("AZUREML_MDC_ENABLED", "True"),
            ("AZUREML_MDC_SAMPLE_RATE", "50"),
            ("AZUREML_MDC_HOST", "mdc"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (legacy.host.as_str(), legacy.port, legacy.percent),
            ("mdc", DEFAULT_PORT, 50.0)
        );
        let e = MdcConfig::from_env(env(&[
            ("AZUREML_MDC_ENABLED", "true"),
            ("AZUREML_MDC_PORT", "x"),
        ]))
        .unwrap_err();
        assert!(e.contains("AZUREML_MDC_PORT is `x`"), "{e}");
    }

    #[test]
    fn payloads_are_dataframes_as_records() {
        let record = serde_json::json!({
            "columns": ["a", "kind"], "rows": [[1.5, "x"], [2, "y"]], "predictions": ["p", "q"],
        });
        let (inputs, outputs) = payloads(&record).unwrap();
        assert_eq!(inputs, r#"[{"a":1.5,"kind":"x"},{"a":2,"kind":"y"}]"#);
        assert_eq!(outputs, r#"[{"prediction":"p"},{"prediction":"q"}]"#);
        assert_eq!(payloads(&serde_json::json!({"error": "bad row"})), None);
    }
}
