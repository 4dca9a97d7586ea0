//! Hyperparameter candidates for grid and random search, and the successive-halving schedule.
//!
//! Deterministic: the same `seed` gives the same candidates, so a re-run of a tuning job tries
//! the same trials.

use crate::PROVIDER;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use mlctl_ml::rng::Rng;
use mlctl_spec::{Goal, Param, ParamType, Scale, Tuning, TuningStrategy};
use serde_json::Value;
use std::collections::BTreeMap;

/// Hyperparameters of one trial.
pub(crate) type Params = BTreeMap<String, Value>;

/// Default `maxTrials`.
pub(crate) const DEFAULT_MAX_TRIALS: u32 = 10;
/// Halving keeps the best 1/ETA of the candidates each round.
pub(crate) const ETA: usize = 3;

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, PROVIDER, "tuning", message)
}

fn is_int(p: &Param) -> bool {
    p.ty == Some(ParamType::Int)
}

fn number(x: f64, int: bool) -> Value {
    if int {
        Value::from(x.round() as i64)
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// The grid values of one parameter.
fn grid_values(name: &str, p: &Param) -> Result<Vec<Value>> {
    if let Some(values) = &p.values {
        return Ok(values.clone());
    }
    let (Some(min), Some(max)) = (p.min, p.max) else {
        return Err(invalid(format!(
            "search space `{name}` needs `values` or `min` and `max`"
        )));
    };
    let step = match (p.step, is_int(p)) {
        (Some(s), _) if s > 0.0 => s,
        (None, true) => 1.0,
        _ => {
            return Err(invalid(format!(
                "grid search over `{name}` needs a positive `step` (or `values`)"
            )));
        }
    };
    let mut out = Vec::new();
    let mut i = 0u32;
    loop {
        let x = min + step * i as f64;
        if x > max + step * 1e-9 || out.len() > 10_000 {
            break;
        }
        out.push(number(x, is_int(p)));
        i += 1;
    }
    Ok(out)
}

/// One random value of one parameter.
fn sample(name: &str, p: &Param, rng: &mut Rng) -> Result<Value> {
    if let Some(values) = &p.values {
        if values.is_empty() {
            return Err(invalid(format!("search space `{name}` has no values")));
        }
        return Ok(values[rng.index(values.len())].clone());
    }
    let (Some(min), Some(max)) = (p.min, p.max) else {
        return Err(invalid(format!(
            "search space `{name}` needs `values` or `min` and `max`"
        )));
    };
    let u = rng.next_f64();
    let x = if p.scale == Some(Scale::Log) {
        if min <= 0.0 {
            return Err(invalid(format!(
                "search space `{name}`: a log scale needs min > 0"
            )));
        }
        (min.ln() + u * (max.ln() - min.ln())).exp()
    } else if is_int(p) {
        // Every integer in [min, max] equally likely.
        (min.round() + (u * (max.round() - min.round() + 1.0)).floor()).min(max.round())
    } else {
        min + u * (max - min)
    };
    Ok(number(x, is_int(p)))
}

/// The candidates to try, each merged over `base` (the job's fixed hyperparameters).
pub(crate) fn candidates(t: &Tuning, base: &Params) -> Result<Vec<Params>> {
    let max = t.max_trials.unwrap_or(DEFAULT_MAX_TRIALS).max(1) as usize;
    let merge = |searched: Params| {
        let mut p = base.clone();
        p.extend(searched);
        p
    };
    match t.strategy {
        TuningStrategy::Grid => {
            let mut axes = Vec::new();
            for (name, p) in &t.search_space {
                axes.push((name.clone(), grid_values(name, p)?));
            }
            let size: usize = axes.iter().map(|(_, v)| v.len().max(1)).product();
            let n = size.min(max);
            // Evenly spaced over the whole grid when it is larger than maxTrials.
            let picks = (0..n).map(|i| i * size / n);
            Ok(picks
                .map(|mut k| {
                    let mut searched = Params::new();
                    for (name, values) in axes.iter().rev() {
                        if values.is_empty() {
                            continue;
                        }
                        searched.insert(name.clone(), values[k % values.len()].clone());
                        k /= values.len();
                    }
                    merge(searched)
                })
                .collect())
        }
        TuningStrategy::Random | TuningStrategy::Bayesian | TuningStrategy::Halving => {
            let mut rng = Rng::new(t.seed.unwrap_or(42));
            let mut out: Vec<Params> = Vec::new();
            let mut attempts = 0;
            while out.len() < max && attempts < max * 20 {
                attempts += 1;
                let mut searched = Params::new();
                for (name, p) in &t.search_space {
                    searched.insert(name.clone(), sample(name, p, &mut rng)?);
                }
                let c = merge(searched);
                // Small discrete spaces: do not try the same point twice.
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Ok(out)
        }
    }
}

/// Whether `a` is a better objective than `b`.
pub(crate) fn better(goal: Goal, a: f64, b: f64) -> bool {
    match goal {
        Goal::Maximize => a > b,
        Goal::Minimize => a < b,
    }
}

/// Successive-halving rounds for `n` candidates: (budget fraction, survivors) per round.
/// The last round runs on the full budget.
pub(crate) fn halving_rounds(n: usize) -> Vec<(f64, usize)> {
    let mut rounds = Vec::new();
    let mut alive = n.max(1);
    loop {
        rounds.push(alive);
        if alive == 1 {
            break;
        }
        alive = alive.div_ceil(ETA);
    }
    let r = rounds.len();
    rounds
        .iter()
        .enumerate()
        .map(|(i, &alive)| ((ETA as f64).powi(i as i32 + 1 - r as i32), alive))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlctl_spec::Objective;

    fn tuning(strategy: TuningStrategy, space: &[(&str, Param)], max: u32) -> Tuning {
        Tuning {
            strategy,
            objective: Objective {
                metric: "accuracy".into(),
                goal: Goal::Maximize,
            },
            max_trials: Some(max),
            parallelism: None,
            seed: Some(7),
            search_space: space
                .iter()
                .map(|(k, p)| (k.to_string(), p.clone()))
                .collect(),
        }
    }

    fn range(min: f64, max: f64, step: Option<f64>, ty: Option<ParamType>) -> Param {
        Param {
            ty,
            min: Some(min),
            max: Some(max),
            step,
            scale: None,
            values: None,
        }
    }

    #[test]
    fn grid_is_the_cartesian_product_capped_by_max_trials() {
        let vals = Param {
            ty: None,
            min: None,
            max: None,
            step: None,
            scale: None,
            values: Some(vec!["a".into(), "b".into()]),
        };
        let t = tuning(
            TuningStrategy::Grid,
            &[
                ("depth", range(1.0, 3.0, None, Some(ParamType::Int))),
                ("kind", vals),
            ],
            100,
        );
        let base = Params::from([("fixed".to_string(), Value::from(1))]);
        let c = candidates(&t, &base).unwrap();
        assert_eq!(c.len(), 6);
        assert!(c.iter().all(|p| p["fixed"] == 1));
        assert_eq!(c[0]["depth"], 1);
        assert_eq!(c[5]["depth"], 3);
        let capped = candidates(
            &tuning(t.strategy, &[("x", range(0.0, 1.0, Some(0.1), None))], 4),
            &Params::new(),
        )
        .unwrap();
        assert_eq!(capped.len(), 4);
        assert!(
            candidates(
                &tuning(
                    TuningStrategy::Grid,
                    &[("x", range(0.0, 1.0, None, None))],
                    4
                ),
                &Params::new()
            )
            .is_err()
        );
    }

    #[test]
    fn random_is_seeded_and_in_range() {
        let mut lr = range(1e-4, 1.0, None, None);
        lr.scale = Some(Scale::Log);
        let t = tuning(
            TuningStrategy::Random,
            &[
                ("lr", lr),
                ("n", range(2.0, 5.0, None, Some(ParamType::Int))),
            ],
            8,
        );
        let a = candidates(&t, &Params::new()).unwrap();
        assert_eq!(a, candidates(&t, &Params::new()).unwrap());
        assert_eq!(a.len(), 8);
        for p in &a {
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-4..=1.0).contains(&lr));
            let n = p["n"].as_i64().unwrap();
            assert!((2..=5).contains(&n));
        }
    }

    #[test]
    fn halving_ends_with_one_candidate_on_the_full_budget() {
        assert_eq!(
            halving_rounds(9),
            vec![(1.0 / 9.0, 9), (1.0 / 3.0, 3), (1.0, 1)]
        );
        assert_eq!(halving_rounds(1), vec![(1.0, 1)]);
        assert_eq!(halving_rounds(4).last(), Some(&(1.0, 1)));
    }
}
