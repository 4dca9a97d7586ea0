//! Container images: the default framework image for script mode, and the SageMaker
//! built-in algorithms mlctl's built-ins map to.
//!
//! Registries per region are those the SageMaker Python SDK uses (`image_uri_config/*.json`).
//! China, GovCloud and ISO regions are not listed: set `image:` there.

use mlctl_spec::Algorithm;

/// Accounts of the SageMaker framework images (scikit-learn, XGBoost) by region.
const FRAMEWORK_REGISTRIES: &[(&str, &str)] = &[
    ("af-south-1", "510948584623"),
    ("ap-east-1", "651117190479"),
    ("ap-northeast-1", "354813040037"),
    ("ap-northeast-2", "366743142698"),
    ("ap-northeast-3", "867004704886"),
    ("ap-south-1", "720646828776"),
    ("ap-southeast-1", "121021644041"),
    ("ap-southeast-2", "783357654285"),
    ("ca-central-1", "341280168497"),
    ("eu-central-1", "492215442770"),
    ("eu-north-1", "662702820516"),
    ("eu-south-1", "978288397137"),
    ("eu-west-1", "141502667606"),
    ("eu-west-2", "764974769150"),
    ("eu-west-3", "659782779980"),
    ("me-south-1", "801668240914"),
    ("sa-east-1", "737474898029"),
    ("us-east-1", "683313688378"),
    ("us-east-2", "257758044811"),
    ("us-west-1", "746614075791"),
    ("us-west-2", "246618743249"),
];

/// Accounts of the first-party algorithm images (linear-learner, kmeans) by region.
const ALGORITHM_REGISTRIES: &[(&str, &str)] = &[
    ("af-south-1", "455444449433"),
    ("ap-east-1", "286214385809"),
    ("ap-northeast-1", "351501993468"),
    ("ap-northeast-2", "835164637446"),
    ("ap-northeast-3", "364406365360"),
    ("ap-south-1", "991648021394"),
    ("ap-southeast-1", "475088953585"),
    ("ap-southeast-2", "712309505854"),
    ("ca-central-1", "469771592824"),
    ("eu-central-1", "664544806723"),
    ("eu-north-1", "669576153137"),
    ("eu-south-1", "257386234256"),
    ("eu-west-1", "438346466558"),
    ("eu-west-2", "644912444149"),
    ("eu-west-3", "749696950732"),
    ("me-south-1", "249704162688"),
    ("sa-east-1", "855470959533"),
    ("us-east-1", "382416733822"),
    ("us-east-2", "404615174143"),
    ("us-west-1", "632365934929"),
    ("us-west-2", "174872318107"),
];

/// Accounts of the Model Monitor analyzer image by region.
const MONITOR_REGISTRIES: &[(&str, &str)] = &[
    ("ap-east-1", "001633400207"),
    ("ap-northeast-1", "574779866223"),
    ("ap-northeast-2", "709848358524"),
    ("ap-south-1", "126357580389"),
    ("ap-southeast-1", "245545462676"),
    ("ap-southeast-2", "563025443158"),
    ("ca-central-1", "536280801234"),
    ("eu-central-1", "048819808253"),
    ("eu-north-1", "895015795356"),
    ("eu-west-1", "468650794304"),
    ("eu-west-2", "749857270468"),
    ("eu-west-3", "680080141114"),
    ("me-south-1", "607024016150"),
    ("sa-east-1", "539772159869"),
    ("us-east-1", "156813124566"),
    ("us-east-2", "777275614652"),
    ("us-west-1", "890145073186"),
    ("us-west-2", "159807026194"),
];

/// The scikit-learn container used for script mode when the spec sets no `image`.
pub const SKLEARN_TAG: &str = "sagemaker-scikit-learn:1.2-1-cpu-py3";
/// The XGBoost container for `gradient_boosting` and `random_forest`.
pub const XGBOOST_TAG: &str = "sagemaker-xgboost:1.7-1";
/// The linear learner for `linear_regression` and `logistic_regression`.
pub const LINEAR_LEARNER_TAG: &str = "linear-learner:1";
/// k-means for `kmeans`.
pub const KMEANS_TAG: &str = "kmeans:1";

/// How each mlctl built-in runs on SageMaker: (YAML name, SageMaker algorithm, how).
/// `None` means there is no SageMaker built-in for it (use script mode).
pub const ALGORITHM_MAPPING: &[(&str, Option<&str>, &str)] = &[
    (
        "linear_regression",
        Some("linear-learner"),
        "predictor_type=regressor; l2 -> wd, max_iter -> epochs",
    ),
    (
        "logistic_regression",
        Some("linear-learner"),
        "predictor_type=binary_classifier or multiclass_classifier; C -> wd = 1/C, max_iter -> epochs",
    ),
    (
        "gradient_boosting",
        Some("xgboost"),
        "n_estimators -> num_round, learning_rate -> eta, max_depth",
    ),
    (
        "random_forest",
        Some("xgboost"),
        "XGBoost's random-forest mode: num_parallel_tree = n_estimators, num_round = 1, eta = 1, subsample = colsample_bynode = 0.8",
    ),
    (
        "kmeans",
        Some("kmeans"),
        "k, max_iter -> epochs; feature_dim from the data",
    ),
    (
        "decision_tree",
        None,
        "no SageMaker built-in: use script mode (`command` + `code`)",
    ),
];

fn registry(table: &'static [(&'static str, &'static str)], region: &str) -> Option<&'static str> {
    table.iter().find(|(r, _)| *r == region).map(|(_, a)| *a)
}

fn uri(table: &'static [(&'static str, &'static str)], region: &str, tag: &str) -> Option<String> {
    registry(table, region).map(|account| format!("{account}.dkr.ecr.{region}.amazonaws.com/{tag}"))
}

/// The default script-mode image of a region (the SageMaker scikit-learn container).
pub fn default_framework_image(region: &str) -> Option<String> {
    uri(FRAMEWORK_REGISTRIES, region, SKLEARN_TAG)
}

/// The SageMaker image of a built-in algorithm in a region; `Err` names the supported ones
/// when the algorithm has no SageMaker equivalent.
pub(crate) fn algorithm_image(
    algorithm: Algorithm,
    region: &str,
) -> Result<Option<String>, String> {
    let image = match algorithm {
        Algorithm::LinearRegression | Algorithm::LogisticRegression => {
            uri(ALGORITHM_REGISTRIES, region, LINEAR_LEARNER_TAG)
        }
        Algorithm::Kmeans => uri(ALGORITHM_REGISTRIES, region, KMEANS_TAG),
        Algorithm::GradientBoosting | Algorithm::RandomForest => {
            uri(FRAMEWORK_REGISTRIES, region, XGBOOST_TAG)
        }
        Algorithm::DecisionTree => {
            let supported: Vec<&str> = ALGORITHM_MAPPING
                .iter()
                .filter(|(_, sm, _)| sm.is_some())
                .map(|(n, _, _)| *n)
                .collect();
            return Err(format!(
                "algorithm `{}` has no SageMaker built-in equivalent; on sagemaker targets the built-ins are {}. Run it in script mode (`command` + `code`) or train it on the local target",
                algorithm.as_str(),
                supported.join(", ")
            ));
        }
    };
    Ok(image)
}

/// The Model Monitor analyzer image of a region (data-quality monitoring schedules).
pub(crate) fn monitor_image(region: &str) -> Option<String> {
    uri(
        MONITOR_REGISTRIES,
        region,
        "sagemaker-model-monitor-analyzer",
    )
}

/// The algorithms a SageMaker target runs.
pub(crate) fn supported_algorithms() -> Vec<Algorithm> {
    ALGORITHM_MAPPING
        .iter()
        .filter(|(_, sm, _)| sm.is_some())
        .filter_map(|(n, _, _)| Algorithm::ALL.iter().find(|(a, _)| a == n).map(|(_, a)| *a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_per_region() {
        assert_eq!(
            default_framework_image("us-east-1").as_deref(),
            Some(
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
            )
        );
        assert_eq!(
            algorithm_image(Algorithm::LogisticRegression, "eu-west-1")
                .unwrap()
                .as_deref(),
            Some("438346466558.dkr.ecr.eu-west-1.amazonaws.com/linear-learner:1")
        );
        assert_eq!(
            algorithm_image(Algorithm::GradientBoosting, "eu-west-1")
                .unwrap()
                .as_deref(),
            Some("141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1")
        );
        assert_eq!(
            algorithm_image(Algorithm::Kmeans, "nowhere-1").unwrap(),
            None
        );
        let err = algorithm_image(Algorithm::DecisionTree, "us-east-1").unwrap_err();
        assert!(
            err.contains("decision_tree")
                && err.contains("gradient_boosting")
                && err.contains("script mode"),
            "{err}"
        );
        // Every algorithm has a row in the mapping table.
        for (name, _) in Algorithm::ALL {
            assert!(
                ALGORITHM_MAPPING.iter().any(|(n, _, _)| *n == name),
                "{name}"
            );
        }
    }
}
