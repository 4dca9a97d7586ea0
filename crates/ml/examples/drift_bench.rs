//! mlctl's drift on the benchmark's data (`bench/drift.sh`): the baseline profiled, the
//! current table judged feature by feature with Evidently's default method per column, as
//! `mlctl monitor run` does. Prints the seconds it took (reading the CSVs apart) and the
//! verdicts as JSON.
//!
//! `cargo run --release -p mlctl-ml --example drift_bench -- DIR`

use mlctl_ml::drift::{Features, drift_features};
use mlctl_spec::{DataFormat, Drift};
use std::time::Instant;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: drift_bench DIR"));
    let t0 = Instant::now();
    let baseline = mlctl_ml::table::read(dir.join("baseline.csv"), DataFormat::Csv)
        .expect("baseline.csv reads");
    let current =
        mlctl_ml::table::read(dir.join("current.csv"), DataFormat::Csv).expect("current.csv reads");
    let read = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let profile = mlctl_ml::profile::profile(&baseline);
    let config = Drift {
        method: None,
        threshold: None,
        share: None,
        features: Default::default(),
    };
    let report = drift_features(&profile, &current, &config, Features::All);
    let compute = t1.elapsed().as_secs_f64();
    let columns: serde_json::Map<String, serde_json::Value> = report
        .features
        .iter()
        .map(|f| {
            (
                f.feature.clone(),
                serde_json::json!({"method": f.method.name(), "score": f.score(), "drifted": f.drifted}),
            )
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "read_seconds": read,
            "drift_seconds": compute,
            "dataset_drift": report.dataset_drifted,
            "columns": columns,
        })
    );
}
