//! Hyperparameter tuning: candidate generation from a [`Tuning`] spec and a parallel trial
//! runner that picks the best trial by the [`Objective`].
//!
//! This module knows nothing of how a trial trains: the caller passes a function from a
//! [`Candidate`] to metrics, so the same runner serves built-ins and script mode.
//!
//! * `grid`: every combination of every parameter's grid, in parameter-name order. A range
//!   needs `step` (linear: `min, min+step, ... <= max`; log: `min, min*step, ... <= max`, so
//!   `step` is a factor > 1) or `values`; an int range without `step` steps by 1. With
//!   `maxTrials` smaller than the grid, a seeded subset is run.
//! * `random` (and `bayesian`, which local targets run as random): `maxTrials` (default 10)
//!   seeded samples; `log` ranges sample log-uniformly.
//! * `halving`: successive halving. `maxTrials` random candidates start with a budget of
//!   `1/3^r` (the caller decides what a budget is, e.g. the fraction of training rows); after
//!   each rung the best third continue with three times the budget, up to 1.
//!
//! The same seed gives the same candidates everywhere.

use crate::rng::Rng;
use mlctl_spec::{Goal, Objective, Param, ParamType, Scale, Tuning, TuningStrategy};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Default `maxTrials`.
pub const DEFAULT_MAX_TRIALS: u32 = 10;
/// Default seed.
pub const DEFAULT_SEED: u64 = 42;
/// Successive halving keeps 1 in `ETA` candidates per rung.
pub const ETA: usize = 3;

/// One set of hyperparameters to try.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Number of the candidate (stable across halving rungs).
    pub id: usize,
    /// Hyperparameter values by name (merge them over the job's fixed hyperparameters).
    pub params: BTreeMap<String, Value>,
    /// Share of the full budget (1 except in early halving rungs).
    pub budget: f64,
}

/// A search space that cannot be searched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tuning parameter `{param}`: {message}")]
pub struct TuneError {
    /// The parameter.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> TuneError {
    TuneError {
        param: param.to_string(),
        message: message.into(),
    }
}

fn kind(p: &Param) -> ParamType {
    p.ty.unwrap_or(if p.values.is_some() {
        ParamType::Categorical
    } else {
        ParamType::Float
    })
}

/// Rounds away binary noise (0.30000000000000004) from generated floats.
fn tidy(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 12 - x.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits.clamp(-300, 300));
    (x * f).round() / f
}

fn number(name: &str, ty: ParamType, x: f64) -> Result<Value, TuneError> {
    match ty {
        ParamType::Int => Ok(Value::from(x.round() as i64)),
        _ => serde_json::Number::from_f64(tidy(x))
            .map(Value::Number)
            .ok_or_else(|| err(name, format!("{x} is not a finite number"))),
    }
}

fn bounds(name: &str, p: &Param) -> Result<(f64, f64), TuneError> {
    let (Some(min), Some(max)) = (p.min, p.max) else {
        return Err(err(name, "needs `min` and `max`, or `values`"));
    };
    if min > max {
        return Err(err(name, format!("min {min} is greater than max {max}")));
    }
    if p.scale == Some(Scale::Log) && min <= 0.0 {
        return Err(err(name, format!("a log scale needs min > 0, got {min}")));
    }
    Ok((min, max))
}

/// The grid of one parameter.
fn grid_values(name: &str, p: &Param) -> Result<Vec<Value>, TuneError> {
    let ty = kind(p);
    if let Some(values) = &p.values {
        if values.is_empty() {
            return Err(err(name, "`values` is empty"));
        }
        return Ok(values.clone());
    }
    if ty == ParamType::Categorical {
        return Err(err(name, "a categorical parameter needs `values`"));
    }
    let (min, max) = bounds(name, p)?;
    let step = match (p.step, ty) {
        (Some(s), _) => s,
        (None, ParamType::Int) if p.scale != Some(Scale::Log) => 1.0,
        _ => {
            return Err(err(
                name,
                "grid search needs `step` or `values` for a float range",
            ));
        }
    };
    let log = p.scale == Some(Scale::Log);
    if (log && step <= 1.0) || (!log && step <= 0.0) {
        return Err(err(
            name,
            if log {
                format!("on a log scale `step` is a factor and must be > 1, got {step}")
            } else {
                format!("`step` must be > 0, got {step}")
            },
        ));
    }
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let x = if log {
            min * step.powi(k as i32)
        } else {
            min + step * k as f64
        };
        if x > max * (1.0 + 1e-9) + 1e-12 || out.len() > 100_000 {
            break;
        }
        let v = number(name, ty, x)?;
        if out.last() != Some(&v) {
            out.push(v);
        }
        k += 1;
    }
    Ok(out)
}

/// One random value of a parameter.
fn sample(name: &str, p: &Param, rng: &mut Rng) -> Result<Value, TuneError> {
    let ty = kind(p);
    if let Some(values) = &p.values {
        if values.is_empty() {
            return Err(err(name, "`values` is empty"));
        }
        return Ok(values[rng.index(values.len())].clone());
    }
    if ty == ParamType::Categorical {
        return Err(err(name, "a categorical parameter needs `values`"));
    }
    let (min, max) = bounds(name, p)?;
    let log = p.scale == Some(Scale::Log);
    let x = match (ty, log) {
        (ParamType::Int, false) => {
            let (lo, hi) = (min.ceil() as i64, max.floor() as i64);
            if lo > hi {
                return Err(err(
                    name,
                    format!("no whole number between {min} and {max}"),
                ));
            }
            (lo + rng.below((hi - lo + 1) as u64) as i64) as f64
        }
        (_, true) => (min.ln() + rng.next_f64() * (max.ln() - min.ln())).exp(),
        _ => min + rng.next_f64() * (max - min),
    };
    number(name, ty, x.clamp(min, max))
}

fn random_candidates(tuning: &Tuning, n: usize, budget: f64) -> Result<Vec<Candidate>, TuneError> {
    let mut rng = Rng::new(tuning.seed.unwrap_or(DEFAULT_SEED));
    (0..n)
        .map(|id| {
            let params = tuning
                .search_space
                .iter()
                .map(|(name, p)| Ok((name.clone(), sample(name, p, &mut rng)?)))
                .collect::<Result<_, TuneError>>()?;
            Ok(Candidate { id, params, budget })
        })
        .collect()
}

/// Rungs of successive halving for `n` starting candidates.
fn halving_rungs(n: usize) -> usize {
    let mut r = 0;
    let mut m = n;
    while m >= ETA {
        m /= ETA;
        r += 1;
    }
    r
}

/// The first candidates of a tuning spec: the whole grid (or its seeded subset), the random
/// samples, or the first halving rung.
pub fn candidates(tuning: &Tuning) -> Result<Vec<Candidate>, TuneError> {
    let max_trials = tuning.max_trials.unwrap_or(DEFAULT_MAX_TRIALS).max(1) as usize;
    match tuning.strategy {
        TuningStrategy::Grid => {
            let grids: Vec<(String, Vec<Value>)> = tuning
                .search_space
                .iter()
                .map(|(n, p)| Ok((n.clone(), grid_values(n, p)?)))
                .collect::<Result<_, TuneError>>()?;
            let total: usize = grids.iter().map(|(_, g)| g.len()).product();
            let mut ids: Vec<usize> = (0..total).collect();
            if tuning.max_trials.is_some() && max_trials < total {
                Rng::new(tuning.seed.unwrap_or(DEFAULT_SEED)).shuffle(&mut ids);
                ids.truncate(max_trials);
                ids.sort_unstable();
            }
            Ok(ids
                .into_iter()
                .enumerate()
                .map(|(id, mut flat)| {
                    // Last parameter varies fastest.
                    let mut params = BTreeMap::new();
                    for (name, g) in grids.iter().rev() {
                        params.insert(name.clone(), g[flat % g.len()].clone());
                        flat /= g.len();
                    }
                    Candidate {
                        id,
                        params,
                        budget: 1.0,
                    }
                })
                .collect())
        }
        TuningStrategy::Random | TuningStrategy::Bayesian => {
            random_candidates(tuning, max_trials, 1.0)
        }
        TuningStrategy::Halving => {
            let r = halving_rungs(max_trials);
            random_candidates(tuning, max_trials, 1.0 / (ETA.pow(r as u32)) as f64)
        }
    }
}

/// A finished trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// What was tried.
    pub candidate: Candidate,
    /// Its metrics, when it succeeded.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

impl Trial {
    /// The objective metric's value, if the trial succeeded and reported it.
    pub fn score(&self, objective: &Objective) -> Option<f64> {
        self.metrics
            .as_ref()
            .and_then(|m| m.get(&objective.metric))
            .copied()
            .filter(|v| !v.is_nan())
    }
}

/// All trials of a tuning run and the best one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuningOutcome {
    /// Every trial, in candidate order (rung by rung for halving).
    pub trials: Vec<Trial>,
    /// Index into `trials` of the best trial (of the last rung for halving); `None` if no
    /// trial reported the objective metric.
    pub best: Option<usize>,
}

impl TuningOutcome {
    /// The best trial.
    pub fn best_trial(&self) -> Option<&Trial> {
        self.best.map(|i| &self.trials[i])
    }
}

/// Whether `a` is better than `b` for `goal`.
pub fn better(goal: Goal, a: f64, b: f64) -> bool {
    match goal {
        Goal::Maximize => a > b,
        Goal::Minimize => a < b,
    }
}

fn best_of(trials: &[Trial], objective: &Objective) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        if let Some(s) = t.score(objective)
            && best.is_none_or(|(_, b)| better(objective.goal, s, b))
        {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// Runs `f` on every candidate, at most `parallelism` at a time (each on its own thread),
/// and picks the best by `objective` (first wins ties). A failing trial is recorded with
/// its error and does not stop the others.
pub fn run_trials<F, E>(
    parallelism: usize,
    candidates: Vec<Candidate>,
    objective: &Objective,
    f: F,
) -> TuningOutcome
where
    F: Fn(&Candidate) -> Result<BTreeMap<String, f64>, E> + Sync,
    E: Display,
{
    let n = candidates.len();
    let results: Mutex<Vec<Option<Trial>>> = Mutex::new(vec![None; n]);
    let next = AtomicUsize::new(0);
    let workers = parallelism.clamp(1, n.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let c = &candidates[i];
                    let start = Instant::now();
                    let outcome = f(c);
                    let seconds = start.elapsed().as_secs_f64();
                    let trial = match outcome {
                        Ok(m) => Trial {
                            candidate: c.clone(),
                            metrics: Some(m),
                            error: None,
                            seconds,
                        },
                        Err(e) => Trial {
                            candidate: c.clone(),
                            metrics: None,
                            error: Some(e.to_string()),
                            seconds,
                        },
                    };
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(trial);
                    }
                }
            });
        }
    });
    let trials: Vec<Trial> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let best = best_of(&trials, objective);
    TuningOutcome { trials, best }
}

/// Runs a whole tuning spec: generates candidates and runs them with `tuning.parallelism`
/// threads; for `halving`, runs every rung.
pub fn run<F, E>(tuning: &Tuning, f: F) -> Result<TuningOutcome, TuneError>
where
    F: Fn(&Candidate) -> Result<BTreeMap<String, f64>, E> + Sync,
    E: Display,
{
    let parallelism = tuning.parallelism.unwrap_or(1).max(1) as usize;
    let mut current = candidates(tuning)?;
    if tuning.strategy != TuningStrategy::Halving {
        return Ok(run_trials(parallelism, current, &tuning.objective, f));
    }
    let mut all = Vec::new();
    loop {
        let rung = run_trials(parallelism, current.clone(), &tuning.objective, &f);
        let last = current.first().is_none_or(|c| c.budget >= 1.0) || current.len() <= 1;
        let offset = all.len();
        let mut ranked: Vec<&Trial> = rung
            .trials
            .iter()
            .filter(|t| t.score(&tuning.objective).is_some())
            .collect();
        // Stable: earlier candidates win ties.
        ranked.sort_by(|a, b| {
            let (x, y) = (
                a.score(&tuning.objective).unwrap_or(f64::NAN),
                b.score(&tuning.objective).unwrap_or(f64::NAN),
            );
            match tuning.objective.goal {
                Goal::Maximize => y.total_cmp(&x),
                Goal::Minimize => x.total_cmp(&y),
            }
        });
        let keep = (current.len() / ETA).max(1);
        let next: Vec<Candidate> = ranked
            .iter()
            .take(keep)
            .map(|t| Candidate {
                budget: (t.candidate.budget * ETA as f64).min(1.0),
                ..t.candidate.clone()
            })
            .collect();
        let best_in_rung = rung.best.map(|b| b + offset);
        all.extend(rung.trials);
        if last || next.is_empty() {
            return Ok(TuningOutcome {
                trials: all,
                best: best_in_rung,
            });
        }
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(v: Value) -> Param {
        serde_json::from_value(v).unwrap()
    }

    fn tuning(strategy: TuningStrategy, space: Value, max_trials: Option<u32>) -> Tuning {
        Tuning {
            strategy,
            objective: Objective {
                metric: "accuracy".into(),
                goal: Goal::Maximize,
            },
            max_trials,
            parallelism: Some(2),
            seed: Some(7),
            search_space: serde_json::from_value(space).unwrap(),
        }
    }

    #[test]
    fn grids() {
        assert_eq!(
            grid_values("C", &param(json!({"min": 0.1, "max": 0.5, "step": 0.1}))).unwrap(),
            vec![json!(0.1), json!(0.2), json!(0.3), json!(0.4), json!(0.5)]
        );
        assert_eq!(
            grid_values(
                "C",
                &param(json!({"min": 0.01, "max": 10, "step": 10, "scale": "log"}))
            )
            .unwrap(),
            vec![json!(0.01), json!(0.1), json!(1.0), json!(10.0)]
        );
        assert_eq!(
            grid_values("d", &param(json!({"type": "int", "min": 2, "max": 4}))).unwrap(),
            vec![json!(2), json!(3), json!(4)]
        );
        let e = grid_values("C", &param(json!({"min": 0.1, "max": 1}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tuning parameter `C`: grid search needs `step` or `values` for a float range"
        );
        let t = tuning(
            TuningStrategy::Grid,
            json!({"C": {"values": [0.1, 1]}, "max_depth": {"type": "int", "min": 1, "max": 3}}),
            None,
        );
        let c = candidates(&t).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(
            c[1].params,
            BTreeMap::from([("C".into(), json!(0.1)), ("max_depth".into(), json!(2))])
        );
        let mut capped = t.clone();
        capped.max_trials = Some(4);
        assert_eq!(candidates(&capped).unwrap().len(), 4);
    }

    #[test]
    fn random_is_seeded_and_in_range() {
        let t = tuning(
            TuningStrategy::Random,
            json!({
                "C": {"min": 0.001, "max": 100, "scale": "log"},
                "n": {"type": "int", "min": 10, "max": 20},
                "crit": {"values": ["gini", "entropy"]}
            }),
            Some(20),
        );
        let a = candidates(&t).unwrap();
        assert_eq!(a, candidates(&t).unwrap());
        assert_eq!(a.len(), 20);
        for c in &a {
            let cv = c.params["C"].as_f64().unwrap();
            assert!((0.001..=100.0).contains(&cv));
            let n = c.params["n"].as_i64().unwrap();
            assert!((10..=20).contains(&n));
        }
        // Log-uniform: some samples below 0.1.
        assert!(a.iter().any(|c| c.params["C"].as_f64().unwrap() < 0.1));
    }

    #[test]
    fn run_trials_in_parallel_picks_the_best_and_records_failures() {
        let t = tuning(
            TuningStrategy::Grid,
            json!({"x": {"values": [1, 5, 3, -1]}}),
            None,
        );
        let out = run(&t, |c| {
            let x = c.params["x"].as_f64().unwrap();
            if x < 0.0 {
                Err(format!("x={x} failed"))
            } else {
                Ok(BTreeMap::from([("accuracy".to_string(), x)]))
            }
        })
        .unwrap();
        assert_eq!(out.trials.len(), 4);
        assert_eq!(out.best_trial().unwrap().candidate.params["x"], json!(5));
        assert_eq!(out.trials[3].error.as_deref(), Some("x=-1 failed"));
        let mut min = t.clone();
        min.objective.goal = Goal::Minimize;
        let out = run(&min, |c| {
            Ok::<_, String>(BTreeMap::from([(
                "accuracy".to_string(),
                c.params["x"].as_f64().unwrap(),
            )]))
        })
        .unwrap();
        assert_eq!(out.best_trial().unwrap().candidate.params["x"], json!(-1));
    }

    #[test]
    fn halving_raises_budgets_and_keeps_the_best() {
        let t = tuning(
            TuningStrategy::Halving,
            json!({"x": {"min": 0, "max": 1}}),
            Some(9),
        );
        let out = run(&t, |c| {
            // Score grows with x and with budget.
            let x = c.params["x"].as_f64().unwrap();
            Ok::<_, String>(BTreeMap::from([("accuracy".to_string(), x * c.budget)]))
        })
        .unwrap();
        let budgets: Vec<f64> = out.trials.iter().map(|t| t.candidate.budget).collect();
        assert_eq!(budgets.len(), 9 + 3 + 1);
        assert!((budgets[0] - 1.0 / 9.0).abs() < 1e-12);
        assert_eq!(budgets[12], 1.0);
        let best = out.best_trial().unwrap();
        assert_eq!(best.candidate.budget, 1.0);
        let max_x = out.trials[..9]
            .iter()
            .map(|t| t.candidate.params["x"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(best.candidate.params["x"].as_f64().unwrap(), max_x);
    }
}
