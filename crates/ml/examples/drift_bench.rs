//! mlctl's drift on the benchmark's data (`bench/drift.sh`): the baseline profiled, the
//! current CSV streamed in chunks of rows into a `LiveSample` (never whole in memory) and
//! judged feature by feature with Evidently's default method per column, as
//! `mlctl monitor run` does. Prints the seconds it took (reading the CSVs apart: "drift" is
//! profiling, accumulating the chunks and the statistics) and the verdicts as JSON.
//!
//! `cargo run --release -p mlctl-ml --example drift_bench -- DIR [ROWS_PER_CHUNK]`

use mlctl_ml::drift::{Features, LiveSample, drift_sample};
use mlctl_ml::table::{CsvOptions, read_csv_chunks};
use mlctl_spec::{DataFormat, Drift};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: drift_bench DIR [ROWS]"));
    let chunk_rows: usize = args
        .next()
        .map_or(50_000, |n| n.parse().expect("ROWS: a number"));
    let t0 = Instant::now();
    let baseline = mlctl_ml::table::read(dir.join("baseline.csv"), DataFormat::Csv)
        .expect("baseline.csv reads");
    let mut read = t0.elapsed();
    let t1 = Instant::now();
    let profile = mlctl_ml::profile::profile(&baseline);
    drop(baseline);
    let mut compute = t1.elapsed();
    let mut live = LiveSample::new(&profile, Features::All);
    // Time spent in `push_table` is drift work; the rest of the chunked read is reading.
    let mut pushing = Duration::ZERO;
    let t2 = Instant::now();
    read_csv_chunks(
        dir.join("current.csv"),
        &CsvOptions::default(),
        chunk_rows,
        |chunk| {
            let t = Instant::now();
            live.push_table(&chunk);
            pushing += t.elapsed();
        },
    )
    .expect("current.csv reads");
    read += t2.elapsed() - pushing;
    let t3 = Instant::now();
    let config = Drift {
        method: None,
        threshold: None,
        share: None,
        features: Default::default(),
    };
    let report = drift_sample(&profile, &mut live, &config);
    compute += pushing + t3.elapsed();
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
            "read_seconds": read.as_secs_f64(),
            "drift_seconds": compute.as_secs_f64(),
            "dataset_drift": report.dataset_drifted,
            "columns": columns,
        })
    );
}
