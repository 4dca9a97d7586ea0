"""Convert the scikit-learn model of an MLflow model directory into an mlctl portable model.

Usage::

    python sklearn_to_mlctl.py MLFLOW_MODEL_DIR OUT_DIR

Reads MLFLOW_MODEL_DIR/MLmodel (the ``sklearn`` flavor), loads the estimator (with
``mlflow.sklearn.load_model`` when mlflow is importable, else pickle, cloudpickle or skops
as the flavor says) and writes OUT_DIR/model.json and OUT_DIR/weights.json, which
``mlctl serve --model-dir OUT_DIR`` serves with the same predictions as scikit-learn.

Supported, exactly: LogisticRegression(CV) (binary, multinomial), the linear regressors
(LinearRegression, Ridge, Lasso, ElasticNet, their CV variants, SGDRegressor, ...),
DecisionTree / ExtraTree classifiers and regressors, RandomForest and ExtraTrees classifiers
and regressors, GradientBoosting classifiers (log loss, exponential) and regressors,
HistGradientBoosting classifiers and regressors (numeric splits, identity-link losses), and
KMeans / MiniBatchKMeans; a Pipeline whose other steps are all "passthrough".

Exactness. Class probabilities and regression values agree to about 1e-15 (exp() and
dot products may round in a different last bit), and tree leaves are reproduced bit for
bit: scikit-learn casts inputs to float32 before comparing ``x32 <= threshold``, while mlctl
compares the float64 input, so each threshold t is replaced by the largest float64 whose
float32 rounding is <= t (see ``float32_cut``): both then send every input the same way.
Labels agree except in the knife-edge case of a row scored within rounding of a tie (a
logistic or boosting score within ~1e-16 of 0, or two k-means centres equidistant).

Input columns: the estimator's ``feature_names_in_``, else the MLmodel signature's column
names, else x0..xN-1; all numeric, non-nullable (mlctl rejects a missing value, as
scikit-learn rejects NaN). The output column: the signature's output name, else
"prediction".

Exit status: 0 converted, printing one JSON line to stdout:
``{"algorithm": ..., "task": ..., "inputs": [...], "classes": [...]}``; 3 the model cannot
be represented exactly, with one line on stderr
``cannot import <class> natively: <why>; serve it with pyfunc instead``; 1 any other error
(bad arguments, unreadable directory, model fails to load), explained on stderr.
"""

import contextlib
import json
import math
import os
import pickle
import sys
import warnings

import numpy as np

EXIT_ERROR = 1
EXIT_NOT_NATIVE = 3
LEAF = 4294967295
"""``feature`` of a leaf node in an mlctl tree (u32::MAX)."""
FLT_MAX = float(np.finfo(np.float32).max)


class Failure(Exception):
    """An error that stops the conversion (exit 1)."""


class NotNative(Exception):
    """A model (or an option of it) mlctl's portable format cannot represent (exit 3)."""

    def __init__(self, model, why):
        super().__init__("cannot import %s natively: %s; serve it with pyfunc instead"
                         % (type(model).__name__, why))


def main(argv):
    """Run the command line; returns the exit status."""
    if len(argv) != 3 or argv[1].startswith("-"):
        print("usage: python sklearn_to_mlctl.py MLFLOW_MODEL_DIR OUT_DIR", file=sys.stderr)
        return EXIT_ERROR
    model_dir, out_dir = argv[1], argv[2]
    try:
        mlmodel = read_mlmodel(model_dir)
        model = unwrap(load_sklearn(model_dir, mlmodel))
        manifest, weights = convert(model, mlmodel)
        write_model(out_dir, manifest, weights)
    except NotNative as e:
        print(str(e), file=sys.stderr)
        return EXIT_NOT_NATIVE
    except Failure as e:
        print("sklearn_to_mlctl: %s" % e, file=sys.stderr)
        return EXIT_ERROR
    summary = {
        "algorithm": manifest["algorithm"],
        "task": manifest["task"],
        "inputs": [f["name"] for f in manifest["inputs"]],
        "classes": manifest["output"].get("classes", []),
    }
    print(json.dumps(summary))
    return 0


def read_mlmodel(model_dir):
    """The parsed MLmodel file of ``model_dir`` (a YAML mapping)."""
    path = os.path.join(model_dir, "MLmodel")
    try:
        import yaml
    except ImportError:
        raise Failure("reading %s needs PyYAML (pip install pyyaml), which mlflow brings" % path)
    try:
        with open(path, encoding="utf-8") as f:
            mlmodel = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise Failure("cannot read %s: %s; pass an MLflow model directory" % (path, e))
    if not isinstance(mlmodel, dict) or "sklearn" not in (mlmodel.get("flavors") or {}):
        flavors = ", ".join(sorted((mlmodel or {}).get("flavors") or {})) or "none"
        raise Failure(
            "%s has no sklearn flavor (flavors: %s); only scikit-learn models convert" % (path, flavors)
        )
    return mlmodel


def load_sklearn(model_dir, mlmodel):
    """The estimator of the MLflow model (its log lines go to stderr, not stdout)."""
    flavor = mlmodel["flavors"]["sklearn"]
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import mlflow.sklearn
        except ImportError:
            return _load_file(model_dir, flavor)
        try:
            return mlflow.sklearn.load_model(os.path.abspath(model_dir))
        except Exception as e:
            raise Failure("mlflow cannot load the model in %s: %s" % (model_dir, e))


def _load_file(model_dir, flavor):
    """Load the serialized estimator without mlflow, honouring mlflow's safety switch
    (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false refuses, as mlflow does)."""
    path = os.path.join(model_dir, flavor.get("pickled_model", "model.pkl"))
    fmt = flavor.get("serialization_format", "cloudpickle")
    if os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").lower() in ("false", "0"):
        raise Failure(
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION forbids loading %s, which can run code from "
            "the model file; unset it (or set it to true) if you trust the model" % path
        )
    try:
        if fmt == "skops":
            import skops.io

            return skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
        if fmt in ("pickle", "cloudpickle"):
            loader = pickle if fmt == "pickle" else __import__("cloudpickle")
            with open(path, "rb") as f:
                return loader.load(f)
    except ImportError as e:
        raise Failure("loading %s (%s format) needs the %s package" % (path, fmt, e.name))
    except Exception as e:
        raise Failure("cannot load %s: %s" % (path, e))
    raise Failure("%s: unknown serialization_format %r (known: skops, pickle, cloudpickle)"
                  % (path, fmt))


def unwrap(model):
    """The estimator itself: a Pipeline's last step when every other step is passthrough."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return model
    for name, step in model.steps[:-1]:
        if step is not None and step != "passthrough":
            raise NotNative(
                model,
                "step `%s` (%s) transforms the inputs, and mlctl's portable format has no such "
                "step (it only one-hot encodes categories and fills missing numbers)"
                % (name, type(step).__name__),
            )
    return unwrap(model.steps[-1][1])


def convert(model, mlmodel):
    """The mlctl manifest and weights of ``model``."""
    import sklearn
    from sklearn import cluster, ensemble, linear_model, tree

    if isinstance(model, (linear_model.LogisticRegression, linear_model.LogisticRegressionCV)):
        algorithm, task, weights = "logistic_regression", "classification", logistic(model)
    elif _is_linear_regressor(model):
        algorithm, task, weights = "linear_regression", "regression", linear(model)
    elif isinstance(model, (tree.DecisionTreeClassifier, tree.DecisionTreeRegressor,
                            tree.ExtraTreeClassifier, tree.ExtraTreeRegressor)):
        algorithm, task, weights = "decision_tree", _tree_task(model), decision_tree(model)
    elif isinstance(model, (ensemble.RandomForestClassifier, ensemble.RandomForestRegressor,
                            ensemble.ExtraTreesClassifier, ensemble.ExtraTreesRegressor)):
        algorithm, task, weights = "random_forest", _tree_task(model), forest(model)
    elif isinstance(model, (ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor)):
        algorithm, task, weights = "gradient_boosting", _tree_task(model), boosting(model)
    elif isinstance(model, (cluster.KMeans, cluster.MiniBatchKMeans)):
        algorithm, task, weights = "kmeans", "clustering", kmeans(model)
    elif isinstance(model, (ensemble.HistGradientBoostingClassifier,
                            ensemble.HistGradientBoostingRegressor)):
        algorithm, task, weights = "gradient_boosting", _tree_task(model), hist_boosting(model)
    else:
        raise NotNative(model, "mlctl's portable format has no equivalent estimator (it has "
                               "linear and logistic regression, decision trees, random forests, "
                               "gradient boosting and k-means)")
    names = input_names(model, mlmodel)
    output = {}
    if task != "clustering":
        output["name"] = output_name(mlmodel)
    if task == "classification":
        output["classes"], output["labelType"] = class_names(model.classes_)
    lineage = {
        "importedFrom": "mlflow",
        "sklearnClass": type(model).__name__,
        "sklearnVersion": sklearn.__version__,
    }
    for key, name in (("run_id", "mlflowRunId"), ("model_uuid", "mlflowModelUuid")):
        if mlmodel.get(key):
            lineage[name] = str(mlmodel[key])
    manifest = {
        "format": "mlctl-model",
        "formatVersion": 1,
        "algorithm": algorithm,
        "task": task,
        "hyperparameters": hyperparameters(model),
        "inputs": [
            {"name": n, "type": "float", "nullable": False, "fill": 0.0, "storage": "float"}
            for n in names
        ],
        "output": output,
        "metrics": {},
        "lineage": lineage,
        "weights": "weights.json",
        "createdBy": "sklearn_to_mlctl",
    }
    return manifest, weights


LINEAR_REGRESSORS = (
    "LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet", "ElasticNetCV",
    "Lars", "LarsCV", "LassoLars", "LassoLarsCV", "LassoLarsIC", "OrthogonalMatchingPursuit",
    "OrthogonalMatchingPursuitCV", "BayesianRidge", "ARDRegression", "HuberRegressor",
    "TheilSenRegressor", "QuantileRegressor", "SGDRegressor", "PassiveAggressiveRegressor",
)
"""scikit-learn regressors that predict ``X @ coef_ + intercept_``."""


def _is_linear_regressor(model):
    """Whether ``model`` is one of LINEAR_REGRESSORS (in this scikit-learn's version)."""
    from sklearn import linear_model

    classes = tuple(c for c in (getattr(linear_model, n, None) for n in LINEAR_REGRESSORS) if c)
    return isinstance(model, classes)


def input_names(model, mlmodel):
    """Input column names: feature_names_in_, else the signature's columns, else x0..xN-1."""
    n = getattr(model, "n_features_in_", None)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(c) for c in names]
    else:
        specs = _signature(mlmodel, "inputs")
        if specs and all(isinstance(s, dict) and s.get("name") is not None
                         and s.get("type") != "tensor" for s in specs):
            names = [str(s["name"]) for s in specs]
        elif n is not None:
            names = ["x%d" % i for i in range(n)]
        else:
            raise Failure("the model does not say how many inputs it takes (no n_features_in_ "
                          "and no column signature in MLmodel); log it with a signature")
    if n is not None and len(names) != n:
        raise Failure("the signature names %d input columns but the model takes %d; log the "
                      "model again with infer_signature(X, y) on its training data" % (len(names), n))
    if len(set(names)) != len(names):
        raise Failure("input column names repeat: %s" % ", ".join(names))
    return names


def output_name(mlmodel):
    """The label column: the signature's single named output, else "prediction"."""
    specs = _signature(mlmodel, "outputs")
    if specs and len(specs) == 1 and isinstance(specs[0], dict) and specs[0].get("name"):
        return str(specs[0]["name"])
    return "prediction"


def _signature(mlmodel, part):
    """The parsed ``inputs`` or ``outputs`` of the MLmodel signature, or None."""
    text = (mlmodel.get("signature") or {}).get(part)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise Failure("the MLmodel signature's %s is not JSON: %s" % (part, e))


def class_names(classes):
    """Class names as mlctl writes them, and the label type (int, float, bool or string)."""
    values = list(np.asarray(classes).tolist())
    if values and all(isinstance(v, bool) for v in values):
        return ["true" if v else "false" for v in values], "bool"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return [str(v) for v in values], "int"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) for v in values):
        # Like mlctl's own float labels: "1.0" for a whole number, else the shortest repr.
        return ["%.1f" % v if float(v).is_integer() and abs(v) < 1e16 else repr(float(v))
                for v in values], "float"
    return [str(v) for v in values], "string"


def hyperparameters(model):
    """The JSON-safe part of ``get_params()``: numbers, strings, bools and None."""
    out = {}
    for name, value in sorted(model.get_params(deep=False).items()):
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, str)):
            out[name] = value
        elif isinstance(value, float) and math.isfinite(value):
            out[name] = value
    return out


def linear(model):
    """Weights of a linear regressor."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).ravel()
    if coef.ndim == 2 and coef.shape[0] != 1 or intercept.size > 1:
        raise NotNative(model, "it predicts %d targets, and an mlctl model predicts one"
                        % max(coef.shape[0], intercept.size))
    return {"type": "linear", "weights": {
        "coef": coef.ravel().tolist(),
        "intercept": float(intercept[0]) if intercept.size else 0.0,
    }}


def logistic(model):
    """Weights of a logistic regression, as mlctl's softmax over one score per class.

    Binary scikit-learn models score one class: P(class 1) = expit(z), which is the softmax
    of the scores (0, z); a binary model fitted with ``multi_class="multinomial"`` (older
    scikit-learn) takes the softmax of (-z, z). One-vs-rest models normalise separate
    sigmoids, which no softmax reproduces.
    """
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).ravel()
    k = len(model.classes_)
    if k > 2 and _one_vs_rest(model):
        raise NotNative(model, "it is one-vs-rest (multi_class='ovr' or the liblinear solver), "
                               "and mlctl's logistic regression is multinomial")
    if k == 2:
        zero = np.zeros_like(coef[0])
        if model.get_params().get("multi_class") == "multinomial":
            coef, intercept = np.vstack([-coef[0], coef[0]]), np.array([-intercept[0], intercept[0]])
        else:
            coef, intercept = np.vstack([zero, coef[0]]), np.array([0.0, intercept[0]])
    return {"type": "logistic", "weights": {
        "coef": coef.ravel().tolist(),
        "intercept": intercept.tolist(),
        "n_iter": int(np.max(getattr(model, "n_iter_", 0))),
    }}


def _one_vs_rest(model):
    """Whether a multiclass logistic regression is one-vs-rest (older scikit-learn)."""
    params = model.get_params()
    multi = params.get("multi_class")
    if multi is None:
        # scikit-learn >= 1.8 has no `multi_class`: multiclass is multinomial, except
        # liblinear, which is one-vs-rest.
        return params.get("solver") == "liblinear"
    return multi in ("ovr", "warn") or (multi in ("auto", "deprecated")
                                        and params.get("solver") == "liblinear")


def _tree_task(model):
    """classification or regression, refusing multi-output models."""
    from sklearn.base import is_classifier

    if getattr(model, "n_outputs_", 1) != 1:
        raise NotNative(model, "it predicts %d outputs, and an mlctl model predicts one"
                        % model.n_outputs_)
    return "classification" if is_classifier(model) else "regression"


def decision_tree(model):
    """Weights of a single decision tree (leaves: class probabilities or the value)."""
    return {"type": "tree", "weights": _tree_weights(model, _tree_task(model))}


def forest(model):
    """Weights of a random forest / extra-trees: mlctl averages the trees' leaf values in
    tree order, as scikit-learn does (probabilities for a classifier)."""
    task = _tree_task(model)
    return {"type": "forest", "weights": {
        "trees": [_tree_weights(t, task) for t in model.estimators_],
    }}


def boosting(model):
    """Weights of a gradient-boosting model: the init estimator's constant raw score plus
    learning_rate * leaf value per tree (stored multiplied, as scikit-learn adds it)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    init = model.init_
    if not (isinstance(init, str) and init == "zero") and not isinstance(
            init, (DummyClassifier, DummyRegressor)):
        raise NotNative(model, "its init estimator (%s) makes a per-row starting score, and "
                               "mlctl's starts from a constant" % type(init).__name__)
    task = _tree_task(model)
    stages = model.estimators_
    n = stages[0, 0].tree_.n_features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = np.asarray(model._raw_predict_init(np.zeros((1, n))), dtype=np.float64)[0]
    # Exponential loss: P(class 1) = expit(2 * raw); doubling every term is exact.
    scale = 2.0 if task == "classification" and model.loss == "exponential" else 1.0
    trees = [
        _tree_weights(stages[i, k], "regression", float(model.learning_rate), scale)
        for i in range(stages.shape[0])
        for k in range(stages.shape[1])
    ]
    k = stages.shape[1]
    if task == "regression":
        loss, n_classes = "squared_error", 1
    else:
        loss, n_classes = ("binary", 2) if k == 1 else ("multiclass", k)
    return {"type": "boosting", "weights": {
        "loss": loss,
        "n_classes": n_classes,
        "init": (base * scale).tolist(),
        "trees": trees,
    }}


def hist_boosting(model):
    """Weights of a HistGradientBoosting model: baseline raw score plus each tree's leaf
    value (the learning rate is already in it), trees compared on the float64 input.

    Only the NaN branch of its splits is dropped, which mlctl never takes (it refuses
    missing inputs); splits on categorical features have no mlctl equivalent.
    """
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise NotNative(model, "it splits on categorical features by category sets, and "
                               "mlctl's trees split numbers by a threshold")
    task = _tree_task(model)
    identity = ("squared_error", "least_squares", "absolute_error",
                "least_absolute_deviation", "quantile")
    if task == "regression" and model.loss not in identity:
        raise NotNative(model, "its %r loss predicts a transformed score, and mlctl's "
                               "gradient_boosting regression predicts the score itself" % model.loss)
    base = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    trees = [_hist_tree(p) for stage in model._predictors for p in stage]
    k = len(base)
    if task == "regression":
        loss, n_classes = "squared_error", 1
    else:
        loss, n_classes = ("binary", 2) if k == 1 else ("multiclass", k)
    return {"type": "boosting", "weights": {
        "loss": loss, "n_classes": n_classes, "init": base.tolist(), "trees": trees,
    }}


def _hist_tree(predictor):
    """One HistGradientBoosting tree (a TreePredictor's node array) as mlctl's tree arrays."""
    nodes = predictor.nodes
    is_leaf = nodes["is_leaf"].astype(bool)
    leaves = np.flatnonzero(is_leaf)
    block = np.zeros(len(nodes), dtype=np.int64)
    block[leaves] = np.arange(len(leaves))
    # A split of missing values from all others has threshold +inf: every number goes left.
    threshold = np.minimum(nodes["num_threshold"].astype(np.float64), sys.float_info.max)
    return {
        "feature": np.where(is_leaf, LEAF, nodes["feature_idx"]).astype(np.int64).tolist(),
        "threshold": np.where(is_leaf, 0.0, threshold).tolist(),
        "left": np.where(is_leaf, block, nodes["left"]).astype(np.int64).tolist(),
        "right": np.where(is_leaf, 0, nodes["right"]).astype(np.int64).tolist(),
        "values": nodes["value"][leaves].astype(np.float64).tolist(),
        "n_out": 1,
    }


def kmeans(model):
    """Weights of k-means: the centres (mlctl takes the nearest, first on ties)."""
    centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    return {"type": "kmeans", "weights": {
        "centers": centers.ravel().tolist(),
        "d": int(centers.shape[1]),
        "inertia": float(model.inertia_),
    }}


def _tree_weights(est, task, factor=1.0, scale=1.0):
    """One fitted scikit-learn tree as mlctl's tree arrays.

    Leaf values come from scikit-learn itself: a row that reaches each leaf is built from
    the split thresholds, and ``predict_proba`` (classifier) or ``predict`` (regressor, then
    ``scale * (factor * value)``) of those rows gives exactly what scikit-learn computes for
    any row landing there, whatever its version's normalisation of ``tree_.value``.
    """
    t = est.tree_
    left, right = t.children_left, t.children_right
    is_leaf = left == -1
    leaves = np.flatnonzero(is_leaf)
    rows = _leaf_rows(t, leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reached = est.apply(rows)
        if not np.array_equal(reached, leaves):
            raise Failure("internal error: built rows do not reach their leaves in %s"
                          % type(est).__name__)
        if task == "classification":
            values = np.asarray(est.predict_proba(rows), dtype=np.float64)
        else:
            values = (np.asarray(est.predict(rows), dtype=np.float64) * factor) * scale
    block = np.zeros(len(left), dtype=np.int64)
    block[leaves] = np.arange(len(leaves))
    feature = np.where(is_leaf, LEAF, t.feature).astype(np.int64)
    threshold = [0.0 if leaf else float32_cut(float(x)) for leaf, x in zip(is_leaf, t.threshold)]
    return {
        "feature": feature.tolist(),
        "threshold": threshold,
        "left": np.where(is_leaf, block, left).tolist(),
        "right": np.where(is_leaf, 0, right).tolist(),
        "values": values.ravel().tolist(),
        "n_out": int(values.shape[1]) if values.ndim == 2 else 1,
    }


def _leaf_rows(t, leaves):
    """One float32-valued input row per leaf (in ``leaves`` order) that reaches it."""
    rows = {}
    stack = [(0, {}, {})]  # node, feature -> upper bound (<=), feature -> lower bound (>)
    while stack:
        node, hi, lo = stack.pop()
        if t.children_left[node] == -1:
            row = np.zeros(t.n_features)
            for f in set(hi) | set(lo):
                row[f] = _inside(lo.get(f, -math.inf), hi.get(f, math.inf))
            rows[node] = row
            continue
        f, x = int(t.feature[node]), float(t.threshold[node])
        stack.append((int(t.children_left[node]), {**hi, f: min(hi.get(f, math.inf), x)}, lo))
        stack.append((int(t.children_right[node]), hi, {**lo, f: max(lo.get(f, -math.inf), x)}))
    return np.array([rows[i] for i in leaves]).reshape(len(leaves), t.n_features)


def _inside(lo, hi):
    """A float32 value v with lo < v <= hi (comparing float32 to the float64 bounds), or NaN
    when there is none: a leaf that only missing values reach, which mlctl never takes."""
    if hi < math.inf:
        v = np.float32(hi)
        if float(v) > hi:
            v = np.nextafter(v, np.float32(-np.inf))
    elif lo < FLT_MAX:
        v = np.float32(lo) if lo > -math.inf else np.float32(0.0)
        while float(v) <= lo:
            v = np.nextafter(v, np.float32(np.inf))
    else:
        return math.nan
    return float(v) if lo < float(v) <= hi else math.nan


def float32_cut(t):
    """The largest float64 c such that ``float32(c) <= t``.

    scikit-learn sends a row left when ``float32(x) <= t``; mlctl when ``x <= threshold``
    on the float64 x. Rounding to float32 is monotone, so ``float32(x) <= t`` exactly when
    ``x <= c``: with f the largest float32 <= t and u the next float32, the float64 values
    rounding to f or below are those up to the midpoint (f + u) / 2 -- itself included when
    the tie rounds to f (even), else excluded. The midpoint is exact in float64. A threshold
    of +inf (scikit-learn's split of missing values from all others) becomes the largest
    float64: every number goes left.
    """
    if t == math.inf:
        return sys.float_info.max  # a split of missing values from all others: all go left
    if abs(t) > FLT_MAX:
        raise Failure("split threshold %r is outside the float32 range" % t)
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    u = np.nextafter(f, np.float32(np.inf))
    mid = float(f) + 2.0 ** 103 if np.isinf(u) else (float(f) + float(u)) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32(mid) overflows at FLT_MAX
        cut = mid if np.float32(mid) == f else float(np.nextafter(mid, -np.inf))
        assert float(np.float32(cut)) <= t < float(np.float32(np.nextafter(cut, np.inf)))
    return cut


def write_model(out_dir, manifest, weights):
    """Write OUT_DIR/weights.json and OUT_DIR/model.json."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, manifest["weights"]), "w", encoding="utf-8") as f:
            json.dump(weights, f, allow_nan=False, separators=(",", ":"))
        with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, allow_nan=False, indent=2)
            f.write("\n")
    except OSError as e:
        raise Failure("cannot write the model to %s: %s" % (out_dir, e))
    except ValueError as e:
        raise Failure("the model has a value JSON cannot hold (NaN or infinity): %s" % e)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
