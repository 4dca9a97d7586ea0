//! Prometheus metrics, per model version, with lock-free counters on the request path.
//!
//! Exposed names (all labelled `model`, `version`, `variant`):
//! - `mlctl_requests_total{code="2xx|4xx|5xx"}` — requests answered,
//! - `mlctl_rows_total` — rows predicted,
//! - `mlctl_request_duration_seconds` — histogram of time from body read to response,
//! - `mlctl_variant_weight` — the variant's current traffic weight (percent),
//! - `mlctl_signature_warnings_total` — requests answered although they broke the model's
//!   input signature (an endpoint with `enforce: warn`),
//!
//! plus `mlctl_capture_dropped_total` and `mlctl_unauthorized_total`. [`Scrape`] reads the
//! text back (the local deployer watches a canary with it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counters of one model version (one variant).
#[derive(Debug)]
pub struct VariantMetrics {
    labels: String,
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    rows: AtomicU64,
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    weight: AtomicU64,
    signature_warnings: AtomicU64,
}

impl VariantMetrics {
    fn new(labels: String) -> Self {
        VariantMetrics {
            labels,
            ok: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
            weight: AtomicU64::new(0),
            signature_warnings: AtomicU64::new(0),
        }
    }

    /// Records one answered request.
    #[inline]
    pub fn observe(&self, status: u16, rows: usize, elapsed: Duration) {
        match status {
            500.. => &self.server_errors,
            400..500 => &self.client_errors,
            _ => &self.ok,
        }
        .fetch_add(1, Relaxed);
        if rows > 0 {
            self.rows.fetch_add(rows as u64, Relaxed);
        }
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let b = BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[b].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Counts a request answered although it broke the input signature (`enforce: warn`).
    pub fn signature_warning(&self) {
        self.signature_warnings.fetch_add(1, Relaxed);
    }

    /// Sets the weight gauge.
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w as u64, Relaxed);
    }
}

/// All metrics of a server.
#[derive(Debug, Default)]
pub struct Metrics {
    variants: Mutex<Vec<Arc<VariantMetrics>>>,
    /// Capture records dropped because the writer fell behind.
    pub capture_dropped: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: AtomicU64,
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The counters of a model version, created on first use and kept across model swaps.
    pub fn variant(&self, model: &str, version: &str, variant: &str) -> Arc<VariantMetrics> {
        let labels = format!(
            "model=\"{}\",version=\"{}\",variant=\"{}\"",
            label_value(model),
            label_value(version),
            label_value(variant)
        );
        let mut v = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = v.iter().find(|m| m.labels == labels) {
            return m.clone();
        }
        let m = Arc::new(VariantMetrics::new(labels));
        v.push(m.clone());
        m
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let vs = self
            .variants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut o = String::with_capacity(1024 + vs.len() * 2048);
        o.push_str(
            "# HELP mlctl_up Whether the server is up.\n# TYPE mlctl_up gauge\nmlctl_up 1\n",
        );
        o.push_str("# HELP mlctl_requests_total Requests answered, by model version and status class.\n# TYPE mlctl_requests_total counter\n");
        for m in &vs {
            for (code, c) in [
                ("2xx", &m.ok),
                ("4xx", &m.client_errors),
                ("5xx", &m.server_errors),
            ] {
                let _ = writeln!(
                    o,
                    "mlctl_requests_total{{{},code=\"{code}\"}} {}",
                    m.labels,
                    c.load(Relaxed)
                );
            }
        }
        o.push_str("# HELP mlctl_rows_total Rows predicted.\n# TYPE mlctl_rows_total counter\n");
        for m in &vs {
            let _ = writeln!(
                o,
                "mlctl_rows_total{{{}}} {}",
                m.labels,
                m.rows.load(Relaxed)
            );
        }
        o.push_str("# HELP mlctl_request_duration_seconds Time from request to response.\n# TYPE mlctl_request_duration_seconds histogram\n");
        for m in &vs {
            let mut cum = 0;
            for (i, b) in m.buckets.iter().enumerate() {
                cum += b.load(Relaxed);
                let le = BUCKETS_US
                    .get(i)
                    .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(
                    o,
                    "mlctl_request_duration_seconds_bucket{{{},le=\"{le}\"}} {cum}",
                    m.labels
                );
            }
            let _ = writeln!(
                o,
                "mlctl_request_duration_seconds_sum{{{}}} {}",
                m.labels,
                m.sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "mlctl_request_duration_seconds_count{{{}}} {cum}",
                m.labels
            );
        }
        o.push_str("# HELP mlctl_variant_weight Traffic weight of a model version, in percent.\n# TYPE mlctl_variant_weight gauge\n");
        for m in &vs {
            let _ = writeln!(
                o,
                "mlctl_variant_weight{{{}}} {}",
                m.labels,
                m.weight.load(Relaxed)
            );
        }
        o.push_str("# HELP mlctl_signature_warnings_total Requests answered although they broke the model's input signature (enforce: warn).\n# TYPE mlctl_signature_warnings_total counter\n");
        for m in &vs {
            let _ = writeln!(
                o,
                "mlctl_signature_warnings_total{{{}}} {}",
                m.labels,
                m.signature_warnings.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP mlctl_capture_dropped_total Capture records dropped (writer behind).\n# TYPE mlctl_capture_dropped_total counter\nmlctl_capture_dropped_total {}",
            self.capture_dropped.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP mlctl_unauthorized_total Requests refused for a missing or wrong token.\n# TYPE mlctl_unauthorized_total counter\nmlctl_unauthorized_total {}",
            self.unauthorized.load(Relaxed)
        );
        o
    }
}

/// One variant's counters, read back from the text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantSample {
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// Cumulative bucket counts, aligned with [`BUCKETS_US`] then +Inf.
    pub buckets: Vec<u64>,
    /// Requests answered although they broke the input signature (`enforce: warn`).
    pub signature_warnings: u64,
}

impl VariantSample {
    /// All answered requests.
    pub fn requests(&self) -> u64 {
        self.ok + self.client_errors + self.server_errors
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &VariantSample) -> VariantSample {
        VariantSample {
            ok: self.ok.saturating_sub(earlier.ok),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            signature_warnings: self
                .signature_warnings
                .saturating_sub(earlier.signature_warnings),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| b.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// Adds `other`'s counters (another process serving the same variant).
    pub fn add(&mut self, other: &VariantSample) {
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.signature_warnings += other.signature_warnings;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (b, o) in self.buckets.iter_mut().zip(&other.buckets) {
            *b += o;
        }
    }

    /// Share of requests answered with 5xx (0 when there were none).
    pub fn error_rate(&self) -> f64 {
        let n = self.requests();
        if n == 0 {
            0.0
        } else {
            self.server_errors as f64 / n as f64
        }
    }

    /// The 99th percentile latency in milliseconds: the upper bound of the bucket holding it
    /// (`None` without requests; +Inf bucket reads as 10 s and more).
    pub fn p99_ms(&self) -> Option<f64> {
        self.quantile_ms(0.99)
    }

    /// The `q` quantile of latency in milliseconds (0 < q <= 1), as the upper bound of the
    /// bucket holding it (`None` before any request; infinite past the last bucket).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = *self.buckets.last()?;
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let i = self.buckets.iter().position(|&c| c >= rank)?;
        Some(
            BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |us| *us as f64 / 1000.0),
        )
    }
}

/// A parsed `/metrics` page: variant name -> its counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// By `variant` label.
    pub variants: BTreeMap<String, VariantSample>,
}

impl Scrape {
    /// Adds another server's page: the counters of variants with the same name are summed,
    /// so the processes sharing an endpoint's port read as one server.
    pub fn add(&mut self, other: &Scrape) {
        for (name, sample) in &other.variants {
            self.variants.entry(name.clone()).or_default().add(sample);
        }
    }

    /// Reads the lines this server writes (not a general Prometheus parser).
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let Some((name, labels)) = head.split_once('{') else {
                continue;
            };
            let label = |key: &str| -> Option<&str> {
                let pat = format!("{key}=\"");
                let start = labels.find(&pat)? + pat.len();
                let end = labels[start..].find('"')?;
                Some(&labels[start..start + end])
            };
            let Some(variant) = label("variant") else {
                continue;
            };
            let e = s.variants.entry(variant.to_string()).or_default();
            match name {
                "mlctl_requests_total" => match label("code") {
                    Some("2xx") => e.ok = value as u64,
                    Some("4xx") => e.client_errors = value as u64,
                    Some("5xx") => e.server_errors = value as u64,
                    _ => {}
                },
                "mlctl_request_duration_seconds_bucket" => e.buckets.push(value as u64),
                "mlctl_signature_warnings_total" => e.signature_warnings = value as u64,
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_read_back() {
        let m = Metrics::default();
        let a = m.variant("iris", "3", "blue");
        for i in 0..100 {
            a.observe(
                if i < 5 { 500 } else { 200 },
                1,
                Duration::from_micros(if i < 98 { 200 } else { 20_000 }),
            );
        }
        let b = m.variant("iris", "4", "green");
        b.observe(400, 0, Duration::from_micros(50));
        assert!(Arc::ptr_eq(&a, &m.variant("iris", "3", "blue")));
        let text = m.render();
        assert!(
            text.contains(
                "mlctl_requests_total{model=\"iris\",version=\"3\",variant=\"blue\",code=\"5xx\"} 5"
            ),
            "{text}"
        );
        let s = Scrape::parse(&text);
        let blue = &s.variants["blue"];
        assert_eq!((blue.ok, blue.server_errors, blue.requests()), (95, 5, 100));
        assert_eq!(blue.error_rate(), 0.05);
        assert_eq!(blue.p99_ms(), Some(25.0));
        assert_eq!(s.variants["green"].client_errors, 1);
        assert_eq!(s.variants["green"].p99_ms(), Some(0.1));
        let later = blue.clone();
        assert_eq!(later.since(blue).requests(), 0);
        assert_eq!(later.since(blue).p99_ms(), None);
    }

    #[test]
    fn pages_of_several_processes_add_up() {
        let one = Metrics::default();
        for _ in 0..9 {
            one.variant("iris", "2", "v2")
                .observe(200, 1, Duration::from_micros(200));
        }
        let two = Metrics::default();
        two.variant("iris", "2", "v2")
            .observe(500, 1, Duration::from_micros(20_000));
        two.variant("iris", "1", "v1")
            .observe(200, 1, Duration::from_micros(50));
        let mut total = Scrape::parse(&one.render());
        total.add(&Scrape::parse(&two.render()));
        let v2 = &total.variants["v2"];
        assert_eq!((v2.ok, v2.server_errors, v2.requests()), (9, 1, 10));
        assert_eq!(v2.error_rate(), 0.1);
        assert_eq!(v2.p99_ms(), Some(25.0));
        assert_eq!(total.variants["v1"].requests(), 1);
    }
}
