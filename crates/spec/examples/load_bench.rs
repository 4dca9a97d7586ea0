//! Times `mlctl_spec::load` on generated projects (written to a temporary directory and read
//! with `DirFiles`), and prints the peak resident memory of the process, which includes the
//! generator's copy of the text until it is written out. Not a test: timings depend on the
//! machine.
//!
//! ```text
//! cargo run --release -p mlctl-spec --example load_bench -- keys 100000
//! cargo run --release -p mlctl-spec --example load_bench -- badkeys 100000
//! cargo run --release -p mlctl-spec --example load_bench -- docs 50
//! cargo run --release -p mlctl-spec --example load_bench -- list 50
//! cargo run --release -p mlctl-spec --example load_bench -- text 50
//! ```
//!
//! - `keys N`: one TrainingJob (script mode) with N hyperparameters: one mapping of N keys.
//! - `badkeys N`: the same with a built-in algorithm, which takes none of them: N errors.
//! - `docs MB`: one manifest file of about MB megabytes, made of many small Datasets (about
//!   20,000 documents and 900,000 nodes for 50 MB, within [`mlctl_spec::yaml::node_budget`]).
//! - `list MB`: one Dataset whose category column lists its categories one per line, about
//!   MB megabytes (about 530,000 list items for 50 MB).
//! - `text MB`: one manifest file of about MB megabytes, made of Datasets with a 4 KB note
//!   each (few nodes per megabyte).

use std::fmt::Write;
use std::time::Instant;

const PROJECT: &str = "apiVersion: mlctl/v1\nkind: Project\nmetadata:\n  name: bench\nspec:\n  targets:\n    local: {provider: local}\n";

const DATASET: &str = "apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: data\nspec:\n  source: data/train.csv\n";

fn many_keys(n: usize, builtin: bool) -> String {
    let mode = if builtin {
        "  algorithm: kmeans\n"
    } else {
        "  command: python train.py\n  code: train/\n"
    };
    let mut s = format!(
        "apiVersion: mlctl/v1\nkind: TrainingJob\nmetadata:\n  name: train\nspec:\n  dataset: data\n{mode}  hyperparameters:\n",
    );
    for i in 0..n {
        let _ = writeln!(s, "    param_{i}: {i}");
    }
    s
}

fn many_docs(bytes: usize) -> String {
    let note = "lorem ipsum dolor sit amet ".repeat(80);
    let mut s = String::with_capacity(bytes + 4096);
    let mut i = 0;
    while s.len() < bytes {
        let _ = write!(
            s,
            "---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: data-{i}\n  labels: {{team: ml}}\n  annotations: {{notes: {note}}}\nspec:\n  source: data/part-{i}.csv\n  target: label\n  schema:\n    columns:\n      - {{name: x, type: float, min: 0, max: 10}}\n      - {{name: label, type: category, categories: [a, b, c]}}\n"
        );
        i += 1;
    }
    s
}

fn long_notes(bytes: usize) -> String {
    let note = "lorem ipsum dolor sit amet ".repeat(150);
    let mut s = String::with_capacity(bytes + 8192);
    let mut i = 0;
    while s.len() < bytes {
        let _ = write!(
            s,
            "---\napiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: data-{i}\n  annotations:\n    notes: {note}\nspec:\n  source: data/part-{i}.csv\n"
        );
        i += 1;
    }
    s
}

fn one_list(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 1024);
    s.push_str("apiVersion: mlctl/v1\nkind: Dataset\nmetadata:\n  name: wide\nspec:\n  source: data/wide.csv\n  target: label\n  schema:\n    columns:\n      - name: label\n        type: category\n        categories:\n");
    let mut i = 0;
    while s.len() < bytes {
        let _ = writeln!(
            s,
            "          - category-{i:08}-of-a-long-list-of-categories-written-out-one-per-line-xxxxxxxx"
        );
        i += 1;
    }
    s
}

/// Peak resident set size of this process, from /proc (Linux only).
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("keys");
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let manifest = match mode {
        "keys" => many_keys(n, false),
        "badkeys" => many_keys(n, true),
        "docs" => many_docs(n << 20),
        "list" => one_list(n << 20),
        "text" => long_notes(n << 20),
        other => {
            eprintln!("unknown mode `{other}`: use keys, badkeys, docs, list or text");
            std::process::exit(2);
        }
    };
    // On disk, read through `DirFiles` as `mlctl validate` does, so the only copy of the text
    // in memory is the loader's.
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, text: &str| {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("mlctl.yaml", PROJECT);
    if mode.ends_with("keys") {
        write("ml/data.yaml", DATASET);
    }
    write("ml/bench.yaml", &manifest);
    let size = manifest.len();
    drop(manifest);
    let files = mlctl_spec::DirFiles::new(dir.path());
    let start = Instant::now();
    let loaded = mlctl_spec::load(&files);
    let took = start.elapsed();
    let errors = loaded.errors().count();
    if let Some(d) = loaded.errors().next() {
        eprintln!("first error:\n{d}");
    }
    println!(
        "{mode} {n}: {:.1} MB manifest, load {:.3} s, {} resources, {errors} errors, peak RSS {}",
        size as f64 / 1e6,
        took.as_secs_f64(),
        loaded.spec.as_ref().map_or(0, |s| s.resources.len()),
        peak_rss()
    );
}
