//! Trains a built-in model on a CSV file and writes a portable model directory, for
//! benchmarks and manual tests of `mlctl serve --model-dir`.
//!
//! `cargo run --release -p mlctl-serve --example portable_model -- DATA.csv LABEL OUT_DIR [ALGORITHM]`
//! (ALGORITHM: `logistic_regression` by default).

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, label, out, rest @ ..] = args.as_slice() else {
        return Err("usage: portable_model DATA.csv LABEL OUT_DIR [ALGORITHM]".into());
    };
    let algorithm: mlctl_spec::Algorithm = serde_json::from_value(serde_json::Value::String(
        rest.first()
            .cloned()
            .unwrap_or_else(|| "logistic_regression".into()),
    ))?;
    let table = mlctl_ml::table::read_csv(data)?;
    let hyperparameters = BTreeMap::new();
    let model = mlctl_ml::train(mlctl_ml::TrainRequest {
        algorithm,
        hyperparameters: &hyperparameters,
        train: &table,
        validation: None,
        target: Some(label),
        seed: 42,
        schema: None,
    })?;
    model.save(out)?;
    println!("wrote {out}");
    Ok(())
}
