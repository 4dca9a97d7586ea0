//! Search spaces as SageMaker parameter ranges, and what a HyperParameterTuningJob cannot
//! search (refused at plan time by `support`).
//!
//! A stepped range (`step`, or an integer range in grid search) is searched as the list of its
//! values, expanded exactly as the local target expands it (`mlctl_ml::tune`): SageMaker
//! samples continuous and integer ranges without a step, and its grid search takes lists only.
//! SageMaker takes at most [`MAX_VALUES`] values per parameter, and its grid search runs every
//! combination.

use crate::builtins::{DataFacts, Translate};
use aws_sdk_sagemaker::types::{
    CategoricalParameterRange, ContinuousParameterRange, HyperParameterScalingType,
    IntegerParameterRange,
};
use mlctl_spec::{Param, ParamType, Scale, Tuning, TuningStrategy};
use serde_json::Value;

/// The most values SageMaker searches for one parameter (a categorical range).
pub(crate) const MAX_VALUES: usize = 30;

/// The values `p` is searched as, when it is a list: `values`, or a stepped range expanded
/// (every range in grid search). `None`: a continuous or integer range.
///
/// # Errors
/// Why the range cannot be expanded (a float range without a step in grid search, ...).
pub(crate) fn expanded(name: &str, p: &Param, grid: bool) -> Result<Option<Vec<Value>>, String> {
    if let Some(v) = &p.values {
        return Ok(Some(v.clone()));
    }
    if p.step.is_none() && !grid {
        return Ok(None);
    }
    let one = Tuning {
        strategy: TuningStrategy::Grid,
        objective: mlctl_spec::Objective {
            metric: String::new(),
            goal: mlctl_spec::Goal::Maximize,
        },
        max_trials: None,
        parallelism: None,
        seed: None,
        search_space: [(name.to_string(), p.clone())].into(),
    };
    let values = mlctl_ml::tune::candidates(&one).map_err(|e| e.to_string())?;
    Ok(Some(
        values
            .into_iter()
            .filter_map(|mut c| c.params.remove(name))
            .collect(),
    ))
}

/// How many trials SageMaker's grid search runs for `tuning`: every combination.
///
/// # Errors
/// The first parameter that cannot be expanded.
pub(crate) fn grid_size(tuning: &Tuning) -> Result<usize, String> {
    let mut total = 1usize;
    for (name, p) in &tuning.search_space {
        let n = expanded(name, p, true)
            .map_err(|e| format!("searchSpace.{name}: {e}"))?
            .map(|v| v.len())
            .unwrap_or(1);
        total = total.saturating_mul(n);
    }
    Ok(total)
}

/// A SageMaker parameter range.
pub(crate) enum Range {
    Categorical(CategoricalParameterRange),
    Integer(IntegerParameterRange),
    Continuous(ContinuousParameterRange),
}

pub(crate) fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The SageMaker range of parameter `name` (SageMaker's name `sm_name`), its values
/// translated by `t`. Script mode's framework containers JSON-decode hyperparameters, so text
/// values stay quoted there.
///
/// # Errors
/// What SageMaker cannot search (more than [`MAX_VALUES`] values, a range without bounds).
pub(crate) fn param_range(
    name: &str,
    sm_name: &str,
    p: &Param,
    strategy: TuningStrategy,
    t: Translate,
    facts: DataFacts,
    script_mode: bool,
) -> Result<Range, String> {
    let integer = p.ty == Some(ParamType::Int);
    if let Some(values) = expanded(name, p, strategy == TuningStrategy::Grid)? {
        if values.len() > MAX_VALUES {
            return Err(format!(
                "SageMaker searches at most {MAX_VALUES} values per parameter, and this gives {}",
                values.len()
            ));
        }
        let encoded = values
            .iter()
            .map(|v| match (v, t) {
                (Value::String(s), Translate::Same) if script_mode => Ok(json_str(s)),
                (v, t) => t.apply_value(v, facts),
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(Range::Categorical(
            CategoricalParameterRange::builder()
                .name(sm_name)
                .set_values(Some(encoded))
                .build(),
        ));
    }
    let (Some(min), Some(max)) = (p.min, p.max) else {
        return Err("a range needs `min` and `max` (or `values`)".into());
    };
    let (lo, hi) = {
        let (a, b) = (t.apply(min, integer, facts), t.apply(max, integer, facts));
        if a <= b { (a, b) } else { (b, a) }
    };
    let scaling = match p.scale {
        Some(Scale::Log) => HyperParameterScalingType::Logarithmic,
        Some(Scale::Linear) => HyperParameterScalingType::Linear,
        None => HyperParameterScalingType::Auto,
    };
    Ok(if integer && t == Translate::Same {
        Range::Integer(
            IntegerParameterRange::builder()
                .name(sm_name)
                .min_value(num(lo.round()))
                .max_value(num(hi.round()))
                .scaling_type(scaling)
                .build(),
        )
    } else {
        Range::Continuous(
            ContinuousParameterRange::builder()
                .name(sm_name)
                .min_value(num(lo))
                .max_value(num(hi))
                .scaling_type(scaling)
                .build(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(
        ty: Option<ParamType>,
        min: f64,
        max: f64,
        step: Option<f64>,
        scale: Option<Scale>,
    ) -> Param {
        Param {
            ty,
            min: Some(min),
            max: Some(max),
            step,
            scale,
            values: None,
        }
    }

    const FACTS: DataFacts = DataFacts {
        rows: 100,
        features: 4,
    };

    fn categorical(r: Range) -> Vec<String> {
        match r {
            Range::Categorical(c) => c.values().to_vec(),
            _ => panic!("expected a categorical range"),
        }
    }

    #[test]
    fn stepped_ranges_become_lists_with_every_strategy() {
        let p = param(Some(ParamType::Int), 2.0, 6.0, Some(2.0), None);
        for s in TuningStrategy::ALL {
            let r = param_range(
                "max_depth",
                "max_depth",
                &p,
                s,
                Translate::Same,
                FACTS,
                false,
            )
            .unwrap();
            assert_eq!(categorical(r), ["2", "4", "6"], "{s:?}");
        }
        // A log-scale step is a factor, as on the local target.
        let p = param(None, 0.001, 1.0, Some(10.0), Some(Scale::Log));
        let r = param_range(
            "eta",
            "eta",
            &p,
            TuningStrategy::Random,
            Translate::Same,
            FACTS,
            false,
        )
        .unwrap();
        assert_eq!(categorical(r), ["0.001", "0.01", "0.1", "1.0"]);
        // Integer ranges in grid search step by 1.
        let p = param(Some(ParamType::Int), 1.0, 3.0, None, None);
        let r = param_range(
            "k",
            "k",
            &p,
            TuningStrategy::Grid,
            Translate::Same,
            FACTS,
            false,
        )
        .unwrap();
        assert_eq!(categorical(r), ["1", "2", "3"]);
    }

    #[test]
    fn too_many_values_and_unsteppable_grids_are_errors() {
        let p = param(None, 0.0, 1.0, Some(0.01), None);
        let err = param_range(
            "x",
            "x",
            &p,
            TuningStrategy::Bayesian,
            Translate::Same,
            FACTS,
            false,
        )
        .err()
        .unwrap();
        assert!(err.contains("at most 30") && err.contains("101"), "{err}");
        let p = param(None, 0.01, 1.0, None, Some(Scale::Log));
        assert!(expanded("eta", &p, true).is_err());
        match param_range(
            "eta",
            "eta",
            &p,
            TuningStrategy::Random,
            Translate::Same,
            FACTS,
            false,
        )
        .unwrap()
        {
            Range::Continuous(r) => assert_eq!(
                (r.min_value(), r.max_value(), r.scaling_type()),
                (
                    Some("0.01"),
                    Some("1"),
                    Some(&HyperParameterScalingType::Logarithmic)
                )
            ),
            _ => panic!("float ranges without a step are continuous"),
        }
    }

    #[test]
    fn the_grid_is_every_combination() {
        let mut t = Tuning {
            strategy: TuningStrategy::Grid,
            objective: mlctl_spec::Objective {
                metric: "accuracy".into(),
                goal: mlctl_spec::Goal::Maximize,
            },
            max_trials: Some(4),
            parallelism: None,
            seed: None,
            search_space: [
                (
                    "a".to_string(),
                    param(Some(ParamType::Int), 1.0, 3.0, None, None),
                ),
                (
                    "b".to_string(),
                    Param {
                        ty: None,
                        min: None,
                        max: None,
                        step: None,
                        scale: None,
                        values: Some(vec![serde_json::json!("x"), serde_json::json!("y")]),
                    },
                ),
            ]
            .into(),
        };
        assert_eq!(grid_size(&t), Ok(6));
        t.search_space
            .insert("c".into(), param(None, 0.0, 1.0, None, None));
        assert!(grid_size(&t).unwrap_err().contains("searchSpace.c"));
    }
}
