//! Runs every fuzz target on its corpus, then on seeded mutations of it: no input may panic.
//!
//! `MLCTL_FUZZ_ITERS` sets the mutations per target (default 3,000, what CI runs);
//! `MLCTL_FUZZ_SEED` the seed (default 1). A panicking input is saved under `fuzz/crashes/`.

use mlctl_fuzz::{Rng, TARGETS, mutate};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Runs `f` on `input`; on a panic saves the input and returns where.
fn run(target: &str, f: mlctl_fuzz::Target, input: &[u8]) -> Option<PathBuf> {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_ok() {
        return None;
    }
    let dir = repo().join("fuzz/crashes");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-{}", &name_of(input)[..16]));
    std::fs::write(&path, input).unwrap();
    Some(path)
}

fn name_of(data: &[u8]) -> String {
    // FNV-1a and the length: enough to name a crash file.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:016x}", data.len())
}

fn fuzz(target: &str) {
    let f = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .unwrap();
    let iters = env_u64("MLCTL_FUZZ_ITERS", 3_000);
    let seed = env_u64("MLCTL_FUZZ_SEED", 1);
    let corpus = corpus(target);
    assert!(!corpus.is_empty(), "the `{target}` corpus is empty");
    // Panics are expected to be caught here; keep the output to the summary.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crashes: Vec<PathBuf> = corpus.iter().filter_map(|c| run(target, f, c)).collect();
    let mut rng = Rng::new(seed ^ target.len() as u64);
    let mut input = corpus[0].clone();
    for i in 0..iters {
        // Mostly mutate the last input further (reaching deeper), sometimes restart from the
        // corpus.
        if i % 8 == 0 {
            input = corpus[rng.below(corpus.len())].clone();
        }
        input = mutate(&mut rng, &input, &corpus, 64 * 1024);
        if let Some(p) = run(target, f, &input) {
            crashes.push(p);
            if crashes.len() >= 5 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz {target}: {} corpus inputs and {iters} mutations (seed {seed}), {} crashes",
        corpus.len(),
        crashes.len()
    );
    assert!(
        crashes.is_empty(),
        "`{target}` panicked on {} inputs, saved as {:?}; run one with\n  cargo test -p mlctl-fuzz --test fuzz -- --nocapture\nafter moving it into fuzz/corpus/{target}/",
        crashes.len(),
        crashes
    );
}

#[test]
fn spec_parser_and_validator_never_panic() {
    fuzz("spec");
}

#[test]
fn invocations_bodies_never_panic() {
    fuzz("invocations");
}

#[test]
fn csv_reader_never_panics() {
    fuzz("csv");
}

#[test]
fn parquet_reader_never_panics() {
    fuzz("parquet");
}

#[test]
fn capture_reader_never_panics() {
    fuzz("capture");
}
