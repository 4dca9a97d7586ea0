//! Benchmarks of mlctl-ml (not tests): run by `bench/ml/compare.sh`, or by hand:
//!
//! ```text
//! cargo bench -p mlctl-ml --bench ml -- gen-file PATH MIB
//! cargo bench -p mlctl-ml --bench ml -- gen-dir DIR FILES
//! cargo bench -p mlctl-ml --bench ml -- digest PATH [CACHE_FILE]
//! cargo bench -p mlctl-ml --bench ml -- gen-table DIR ROWS FEATURES CLASSES   # CLASSES 0: regression
//! cargo bench -p mlctl-ml --bench ml -- fit ALGORITHM TRAIN_CSV TEST_CSV [N_ESTIMATORS] [HYPERPARAMETERS_JSON]
//! cargo bench -p mlctl-ml --bench ml -- predict      # 1-row predictions/s, iris logistic regression
//! ```
//!
//! Every measuring command prints one line of JSON.

use mlctl_ml::digest::{DigestCache, digest_path};
use mlctl_ml::metrics::evaluate;
use mlctl_ml::rng::Rng;
use mlctl_ml::table::{ColumnData, Table, read_csv, write_csv};
use mlctl_ml::{TrainRequest, train};
use mlctl_spec::Algorithm;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("usage: see the doc comment of crates/ml/benches/ml.rs");
            std::process::exit(2)
        })
    };
    match args.first().map(String::as_str) {
        None => eprintln!("no command: see the doc comment of crates/ml/benches/ml.rs"),
        Some("gen-file") => gen_file(Path::new(arg(1)), arg(2).parse().unwrap_or(1024)),
        Some("gen-dir") => gen_dir(Path::new(arg(1)), arg(2).parse().unwrap_or(10_000)),
        Some("digest") => digest(Path::new(arg(1)), args.get(2).map(Path::new)),
        Some("gen-table") => gen_table(
            Path::new(arg(1)),
            arg(2).parse().unwrap_or(100_000),
            arg(3).parse().unwrap_or(20),
            arg(4).parse().unwrap_or(3),
        ),
        Some("fit") => fit(
            arg(1),
            Path::new(arg(2)),
            Path::new(arg(3)),
            args.get(4).and_then(|s| s.parse().ok()).unwrap_or(100),
            args.get(5).map(String::as_str),
        ),
        Some("predict") => predict(),
        Some(other) => {
            eprintln!("unknown command {other}");
            std::process::exit(2)
        }
    }
}

fn gen_file(path: &Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create file"));
    let mut r = Rng::new(1);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            chunk.copy_from_slice(&r.next_u64().to_le_bytes());
        }
        f.write_all(&buf).expect("write");
    }
    f.flush().expect("flush");
}

fn gen_dir(dir: &Path, files: usize) {
    let mut r = Rng::new(2);
    for i in 0..files {
        let sub = dir.join(format!("{:02}", i % 100));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let len = 512 + r.index(3584);
        let bytes: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
        std::fs::write(sub.join(format!("f{i:05}.bin")), bytes).expect("write");
    }
}

fn digest(path: &Path, cache_file: Option<&Path>) {
    let start = Instant::now();
    let (d, entries) = match cache_file {
        Some(c) => {
            let mut cache = DigestCache::open(c);
            let d = digest_path(path, Some(&mut cache)).expect("digest");
            cache.save().expect("save cache");
            (d, cache.len())
        }
        None => (digest_path(path, None).expect("digest"), 0),
    };
    println!(
        "{{\"seconds\": {:.4}, \"digest\": \"{d}\", \"cache_entries\": {entries}}}",
        start.elapsed().as_secs_f64()
    );
}

/// A classification table in the spirit of scikit-learn's `make_classification`: `classes`
/// Gaussian clusters over half the features, the rest noise, 5% flipped labels. With
/// `classes` 0, a regression table: the label is a non-linear function of the informative
/// features plus noise.
fn gen_table(dir: &Path, rows: usize, features: usize, classes: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut r = Rng::new(3);
    let informative = features.div_ceil(2);
    let centroids: Vec<Vec<f64>> = (0..classes)
        .map(|_| (0..informative).map(|_| r.normal() * 0.8).collect())
        .collect();
    let make = |n: usize, r: &mut Rng| {
        let mut cols = vec![Vec::with_capacity(n); features];
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            if classes == 0 {
                let mut y = 0.0;
                for (j, col) in cols.iter_mut().enumerate() {
                    let v = r.normal();
                    if j < informative {
                        let w = [1.0, -0.5, 0.8, 0.3, -1.2][j % 5];
                        y += w * v + if j % 3 == 0 { 0.5 * v * v } else { 0.0 };
                    }
                    col.push(v);
                }
                y += if cols[0].last() > Some(&0.5) {
                    2.0
                } else {
                    0.0
                };
                labels.push(Some(format!("{:.6}", y + 0.5 * r.normal())));
                continue;
            }
            let c = r.index(classes);
            for (j, col) in cols.iter_mut().enumerate() {
                let base = if j < informative {
                    centroids[c][j]
                } else {
                    0.0
                };
                // Some curvature so that trees and linear models differ.
                let v = base + r.normal();
                col.push(if j % 5 == 4 { v + 0.3 * v * v } else { v });
            }
            let label = if r.next_f64() < 0.05 {
                r.index(classes)
            } else {
                c
            };
            labels.push(Some(format!("c{label}")));
        }
        let mut t = Table::new();
        for (j, col) in cols.into_iter().enumerate() {
            let rounded = col.into_iter().map(|v| (v * 1e6).round() / 1e6).collect();
            t.push_column(format!("x{j}"), ColumnData::Float(rounded))
                .expect("column");
        }
        let label = if classes == 0 {
            ColumnData::Float(
                labels
                    .iter()
                    .map(|l| l.as_deref().unwrap_or("0").parse().unwrap_or(0.0))
                    .collect(),
            )
        } else {
            ColumnData::Str(labels)
        };
        t.push_column("label", label).expect("column");
        t
    };
    let train = make(rows, &mut r);
    let test = make(rows / 4, &mut r);
    write_csv(&train, dir.join("train.csv")).expect("write train");
    write_csv(&test, dir.join("test.csv")).expect("write test");
}

fn fit(
    algorithm: &str,
    train_csv: &Path,
    test_csv: &Path,
    n_estimators: usize,
    hyperparameters: Option<&str>,
) {
    let algo = Algorithm::ALL
        .iter()
        .find(|(n, _)| *n == algorithm)
        .map(|(_, a)| *a)
        .expect("algorithm name");
    let t0 = Instant::now();
    let train_t = read_csv(train_csv).expect("read train");
    let test_t = read_csv(test_csv).expect("read test");
    let read_s = t0.elapsed().as_secs_f64();
    let mut hp = BTreeMap::new();
    if algo == Algorithm::RandomForest || algo == Algorithm::GradientBoosting {
        hp.insert("n_estimators".to_string(), serde_json::json!(n_estimators));
    }
    if let Some(json) = hyperparameters {
        let extra: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).expect("hyperparameters: a JSON object");
        hp.extend(extra);
    }
    let t1 = Instant::now();
    let model = train(TrainRequest {
        algorithm: algo,
        hyperparameters: &hp,
        train: &train_t,
        validation: None,
        target: Some("label"),
        seed: 0,
        schema: None,
    })
    .expect("train");
    let fit_s = t1.elapsed().as_secs_f64();
    let metrics = evaluate(&model, &test_t).expect("evaluate");
    // Save and load: what a serving process pays at start.
    let dir = std::env::temp_dir().join(format!("mlctl-bench-model-{}", std::process::id()));
    model.save(&dir).expect("save");
    let bytes: u64 = std::fs::read_dir(&dir)
        .expect("list model")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t2 = Instant::now();
    let loaded = mlctl_ml::PortableModel::load(&dir).expect("load");
    let load_s = t2.elapsed().as_secs_f64();
    assert_eq!(loaded.manifest(), model.manifest());
    let _ = std::fs::remove_dir_all(&dir);
    let (score_name, score) = match metrics.get("accuracy") {
        Some(a) => ("accuracy", *a),
        None => ("r2", metrics.get("r2").copied().unwrap_or(f64::NAN)),
    };
    println!(
        "{{\"algorithm\": \"{algorithm}\", \"fit_seconds\": {fit_s:.3}, \"read_seconds\": {read_s:.3}, \"{score_name}\": {score:.4}, \"model_bytes\": {bytes}, \"load_seconds\": {load_s:.3}}}"
    );
}

/// Single-row prediction throughput of the iris logistic regression (the serving hot path).
fn predict() {
    let iris = read_csv(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/iris.csv"))
        .expect("read iris");
    let model = train(TrainRequest {
        algorithm: Algorithm::LogisticRegression,
        hyperparameters: &BTreeMap::new(),
        train: &iris,
        validation: None,
        target: Some("species"),
        seed: 0,
        schema: None,
    })
    .expect("train");
    let row = vec![vec![
        serde_json::json!(5.9),
        serde_json::json!(3.0),
        serde_json::json!(5.1),
        serde_json::json!(1.8),
    ]];
    let raw = [5.9, 3.0, 5.1, 1.8];
    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            model
                .predict_rows(std::hint::black_box(&row))
                .expect("predict"),
        );
    }
    let rows_s = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            model
                .predict_f64(std::hint::black_box(&raw), 1)
                .expect("predict"),
        );
    }
    let f64_s = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{{\"predict_rows_per_second\": {rows_s:.0}, \"predict_f64_per_second\": {f64_s:.0}}}"
    );
}
