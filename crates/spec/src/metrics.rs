//! The metrics built-in algorithms report: one table with each metric's name, meaning,
//! direction and the families of model that report it.
//!
//! This is the one list. The validator checks a Model's gates and a tuning objective on a
//! built-in job against it; mlctl-ml's tests check that its evaluation reports exactly these
//! names; `docs/metrics.md` is generated from it ([`markdown`]). Script-mode jobs report any
//! metric they like (`metrics.json` or `metrics` regexes), so none of this applies to them.

use crate::builtins;
use crate::{Algorithm, ColumnType};

/// What a model predicts, which decides the metrics it is scored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A class from a fixed set.
    Classification,
    /// A number.
    Regression,
    /// A cluster.
    Clustering,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 3] = [
        Family::Classification,
        Family::Regression,
        Family::Clustering,
    ];

    /// `classification`, `regression` or `clustering`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Classification => "classification",
            Family::Regression => "regression",
            Family::Clustering => "clustering",
        }
    }
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Larger is better (accuracy, r2).
    HigherIsBetter,
    /// Smaller is better (losses and errors).
    LowerIsBetter,
}

impl Direction {
    /// `higher` or `lower`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => "higher",
            Direction::LowerIsBetter => "lower",
        }
    }
}

/// One metric a built-in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Its name, as gates and objectives write it (scikit-learn's).
    pub name: &'static str,
    /// What it measures, in one line (and when it is absent).
    pub meaning: &'static str,
    /// Which way is better.
    pub direction: Direction,
    /// The families of model that report it.
    pub families: &'static [Family],
}

const C: &[Family] = &[Family::Classification];
const R: &[Family] = &[Family::Regression];
const K: &[Family] = &[Family::Clustering];

/// Every metric built-ins report, classification first, then regression, then clustering.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "accuracy",
        meaning: "fraction of rows whose predicted class is the true one",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "precision_macro",
        meaning: "precision of each class, averaged with equal weight per class",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "recall_macro",
        meaning: "recall of each class, averaged with equal weight per class",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "f1_macro",
        meaning: "F1 score of each class, averaged with equal weight per class",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "precision_weighted",
        meaning: "precision of each class, averaged weighted by the class's share of rows",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "recall_weighted",
        meaning: "recall of each class, averaged weighted by the class's share of rows",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "f1_weighted",
        meaning: "F1 score of each class, averaged weighted by the class's share of rows",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "roc_auc",
        meaning: "area under the ROC curve (binary, or one-vs-rest averaged over classes); absent when the held-out rows hold a single class",
        direction: Direction::HigherIsBetter,
        families: C,
    },
    Metric {
        name: "log_loss",
        meaning: "cross-entropy of the predicted class probabilities",
        direction: Direction::LowerIsBetter,
        families: C,
    },
    Metric {
        name: "rmse",
        meaning: "root mean squared error, in the label's unit",
        direction: Direction::LowerIsBetter,
        families: R,
    },
    Metric {
        name: "mse",
        meaning: "mean squared error",
        direction: Direction::LowerIsBetter,
        families: R,
    },
    Metric {
        name: "mae",
        meaning: "mean absolute error, in the label's unit",
        direction: Direction::LowerIsBetter,
        families: R,
    },
    Metric {
        name: "r2",
        meaning: "coefficient of determination: 1 is a perfect fit, 0 no better than the mean",
        direction: Direction::HigherIsBetter,
        families: R,
    },
    Metric {
        name: "inertia",
        meaning: "sum of squared distances from each row to its cluster's centroid",
        direction: Direction::LowerIsBetter,
        families: K,
    },
    Metric {
        name: "silhouette",
        meaning: "mean silhouette coefficient (-1 to 1) on a sample of at most 2,000 rows; absent with fewer than two clusters",
        direction: Direction::HigherIsBetter,
        families: K,
    },
];

/// The metric named `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The metrics a model of `family` reports, in table order.
pub fn reported_by(family: Family) -> impl Iterator<Item = &'static Metric> {
    METRICS.iter().filter(move |m| m.families.contains(&family))
}

/// Whether larger values of `name` are better; `None` for a metric no built-in reports.
pub fn higher_is_better(name: &str) -> Option<bool> {
    metric(name).map(|m| m.direction == Direction::HigherIsBetter)
}

/// Which way `name` is better for the metrics of training job `job`, as declared, never
/// guessed: a script's own `metrics:` definition (`goal`), else the vocabulary, else the
/// job's tuning objective on that metric. `None`: the spec does not say.
pub fn direction_in(job: &crate::TrainingJobSpec, name: &str) -> Option<Direction> {
    let of_goal = |g: crate::Goal| match g {
        crate::Goal::Maximize => Direction::HigherIsBetter,
        crate::Goal::Minimize => Direction::LowerIsBetter,
    };
    let declared = (job.algorithm.is_none())
        .then(|| job.metrics.iter().find(|m| m.name == name))
        .flatten()
        .and_then(|m| m.goal);
    declared
        .map(of_goal)
        .or_else(|| metric(name).map(|m| m.direction))
        .or_else(|| {
            job.tuning
                .as_ref()
                .filter(|t| t.objective.metric == name)
                .map(|t| of_goal(t.objective.goal))
        })
}

/// The families a tree-based built-in trains for a label column of type `label` (`None`
/// when the spec does not say): as mlctl-ml decides, a float label is regressed, text, a
/// category or a boolean classified, and an integer label classified when it holds at most
/// 20 distinct values, which only the data can tell.
pub fn families_for_label(label: Option<ColumnType>) -> &'static [Family] {
    match label {
        Some(ColumnType::Float) => &[Family::Regression],
        Some(ColumnType::Category | ColumnType::String | ColumnType::Bool) => {
            &[Family::Classification]
        }
        Some(ColumnType::Int) | None => &[Family::Classification, Family::Regression],
    }
}

/// `docs/metrics.md`: the table as Markdown, and which built-in reports which family.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics of built-in algorithms\n\n\
         <!-- Generated from crates/spec/src/metrics.rs (`mlctl_spec::metrics::METRICS`); do not edit.\n     \
         Regenerate with: UPDATE_DOCS=1 cargo test -p mlctl-spec --test docs -->\n\n\
         A built-in training job (`algorithm:`) scores its model on the rows held out from\n\
         training and reports these metrics. A Model's `gates[].metric` and a job's\n\
         `tuning.objective.metric` must name one its algorithm reports; `mlctl validate` says\n\
         which when one does not. Script-mode jobs (`command:`) report whatever their script\n\
         writes; a script metric that is not in this vocabulary needs `goal: maximize` or\n\
         `goal: minimize` in the job's `metrics:` (nothing is guessed from a name), and one\n\
         that is keeps the direction below.\n\n\
         ## Which rows a metric is on\n\n\
         The test rows are held out: gates judge metrics on them. A tuned job compares its\n\
         candidates on validation rows and scores only the chosen one on the test rows (in\n\
         script mode a trial gets the `train` and `validation` channels, and the chosen\n\
         candidate is trained again with `train` and `test`).\n\n\
         | Dataset parts | Untuned: scored on | Tuned: compared on / scored on |\n\
         |---|---|---|\n\
         | train, validation, test | test | validation / test |\n\
         | train, test | test | 20% carved from train / test |\n\
         | train, validation | validation | validation / 20% carved from train |\n\
         | none | 20% carved | 20% carved from the rest / 20% carved |\n\n\
         Carves are seeded and stratified as the dataset's `split` says (seed 42, not\n\
         stratified, without one). Each run records its row counts, where they came from, the\n\
         seed and the data digest: `mlctl runs show RUN`. SageMaker follows the same rule for\n\
         a tuned job: its trials get the train and validation rows, and the chosen candidate\n\
         is trained again in a final job with the train rows and scored on the test rows (a\n\
         built-in's under the channel its algorithm scores).\n\n\
         ## Regression gates\n\n\
         `maxRegression` compares with the Model's version in production, else its newest\n\
         approved version. With neither, the gate is reported as `NOT EVALUATED` (\"no\n\
         baseline\") in plan, apply and `mlctl models show`, and lets the version through,\n\
         unless the gate sets `requireBaseline: true`.\n\n",
    );
    for family in Family::ALL {
        out.push_str(&format!("## {}\n\n", capitalized(family.as_str())));
        out.push_str("| Metric | Better | Meaning |\n|---|---|---|\n");
        for m in reported_by(family) {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                m.name,
                m.direction.as_str(),
                m.meaning
            ));
        }
        out.push('\n');
    }
    out.push_str("## Which algorithm reports which\n\n| Algorithm | Metrics |\n|---|---|\n");
    for (name, a) in Algorithm::ALL {
        let fams: Vec<&str> = builtins::families(a).iter().map(|f| f.as_str()).collect();
        let how = match builtins::task_hyperparameter(a) {
            Some(key) => format!(
                "{}: set by `{key}` if given, else by the dataset's `target` column (float: regression; category, string, bool: classification; int: classification with at most 20 distinct values)",
                fams.join(" or ")
            ),
            None => fams.join(" or "),
        };
        out.push_str(&format!("| `{name}` | {how} |\n"));
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_reports_something_and_names_are_unique() {
        for f in Family::ALL {
            assert!(reported_by(f).next().is_some(), "{f:?}");
        }
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert_eq!(higher_is_better("rmse"), Some(false));
        assert_eq!(higher_is_better("accuracy"), Some(true));
        assert_eq!(higher_is_better("my_score"), None);
    }
}
