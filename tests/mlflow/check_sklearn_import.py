"""Make fixed scikit-learn models as MLflow models, with rows and sklearn's predictions.

Usage::

    python check_sklearn_import.py WORKDIR

For every model NAME below (fixed data from scikit-learn's bundled datasets, fixed seeds),
writes into WORKDIR (created if needed; NAME must not exist yet):

* ``NAME/`` -- ``mlflow.sklearn.save_model(model, ..., signature=infer_signature(X, y))``
  with X a pandas DataFrame with column names (tree models in the cloudpickle format,
  the others in mlflow's default, skops);
* ``NAME.rows.json`` -- ``{"columns": [...], "data": [[...], ...]}``: 20 rows of the data
  and, for tree models, rows whose values sit at and next to the first trees' root split
  thresholds (in float32 and float64), so any difference in comparing a threshold shows;
* ``NAME.expected.json`` -- ``model.predict`` on those rows, as a JSON list (class labels
  as their type: string, int or bool; regression values; cluster indices);
* ``NAME.expected_proba.json`` -- classifiers only: ``predict_proba``, one list per row,
  columns in ``classes_`` order.

Prints the names, as one JSON list on stdout. Exit 0, or 1 with the reason on stderr.
The e2e test converts each NAME with sklearn_to_mlctl.py, serves the result with
``mlctl serve --model-dir`` and checks the served predictions equal NAME.expected.json
(values to 1e-9) and the served probabilities NAME.expected_proba.json to 1e-9.
"""

import json
import os
import sys
import warnings

import numpy as np
import pandas as pd


def datasets():
    """name -> (X DataFrame, y Series or None) of the bundled datasets."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

    iris = load_iris(as_frame=True)
    X_iris = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    species = pd.Series(iris.target_names[iris.target], name="species")
    cancer = load_breast_cancer(as_frame=True)  # column names with spaces, kept
    wine = load_wine(as_frame=True)
    diabetes = load_diabetes(as_frame=True)
    return {
        "iris_str": (X_iris, species),
        "iris_int": (X_iris, iris.target.rename("species")),
        "cancer_int": (cancer.data, cancer.target.rename("malignant")),
        "cancer_bool": (cancer.data, (cancer.target == 1).rename("benign")),
        "wine_int": (wine.data, wine.target.rename("cultivar")),
        "diabetes": (diabetes.data, diabetes.target.rename("progression")),
        "iris_x": (X_iris, None),
    }


def models():
    """name -> (dataset name, unfitted estimator)."""
    from sklearn import cluster, ensemble, linear_model, tree

    return {
        "iris_logistic": ("iris_str", linear_model.LogisticRegression(max_iter=1000)),
        "cancer_logistic": ("cancer_int", linear_model.LogisticRegression(max_iter=10000)),
        "iris_random_forest": ("iris_int", ensemble.RandomForestClassifier(
            n_estimators=25, max_depth=6, random_state=0)),
        "wine_extra_trees": ("wine_int", ensemble.ExtraTreesClassifier(
            n_estimators=20, random_state=0)),
        "cancer_decision_tree": ("cancer_bool", tree.DecisionTreeClassifier(
            max_depth=5, random_state=0)),
        "cancer_gradient_boosting": ("cancer_int", ensemble.GradientBoostingClassifier(
            n_estimators=30, random_state=0)),
        "iris_gradient_boosting": ("iris_str", ensemble.GradientBoostingClassifier(
            n_estimators=20, max_depth=2, random_state=0)),
        "diabetes_decision_tree": ("diabetes", tree.DecisionTreeRegressor(
            max_depth=6, random_state=0)),
        "diabetes_random_forest": ("diabetes", ensemble.RandomForestRegressor(
            n_estimators=20, max_depth=8, random_state=0)),
        "diabetes_extra_trees": ("diabetes", ensemble.ExtraTreesRegressor(
            n_estimators=10, random_state=0)),
        "diabetes_gradient_boosting": ("diabetes", ensemble.GradientBoostingRegressor(
            n_estimators=40, random_state=0)),
        "cancer_hist_gradient_boosting": ("cancer_int", ensemble.HistGradientBoostingClassifier(
            max_iter=30, random_state=0)),
        "iris_hist_gradient_boosting": ("iris_str", ensemble.HistGradientBoostingClassifier(
            max_iter=15, random_state=0)),
        "diabetes_hist_gradient_boosting": ("diabetes", ensemble.HistGradientBoostingRegressor(
            max_iter=30, random_state=0)),
        "diabetes_linear": ("diabetes", linear_model.LinearRegression()),
        "diabetes_ridge": ("diabetes", linear_model.Ridge(alpha=0.5)),
        "diabetes_lasso": ("diabetes", linear_model.Lasso(alpha=0.01)),
        "diabetes_elastic_net": ("diabetes", linear_model.ElasticNet(alpha=0.01)),
        "iris_kmeans": ("iris_x", cluster.KMeans(n_clusters=3, n_init=10, random_state=0)),
    }


def root_splits(model):
    """(feature, threshold) of the root split of the first (up to 3) trees of ``model``."""
    if hasattr(model, "_predictors"):  # HistGradientBoosting: compares the float64 input
        roots = [p.nodes[0] for stage in model._predictors[:3] for p in stage[:1]]
        return [(int(r["feature_idx"]), float(r["num_threshold"])) for r in roots
                if not r["is_leaf"]]
    if hasattr(model, "tree_"):
        trees = [model]
    elif hasattr(model, "estimators_"):
        trees = list(np.ravel(model.estimators_))[:3]
    else:
        return []
    return [(int(t.tree_.feature[0]), float(t.tree_.threshold[0]))
            for t in trees if t.tree_.children_left[0] != -1]


def near(t):
    """float64 values at and around the float32 boundary of threshold ``t``."""
    f = np.float32(t)
    below = np.nextafter(f, np.float32(-np.inf))
    above = np.nextafter(f, np.float32(np.inf))
    out = {t, float(np.nextafter(t, -np.inf)), float(np.nextafter(t, np.inf)),
           float(f), float(below), float(above)}
    for mid in ((float(below) + float(f)) / 2, (float(f) + float(above)) / 2):
        out |= {mid, float(np.nextafter(mid, -np.inf)), float(np.nextafter(mid, np.inf))}
    return sorted(out)


def fixed_rows(model, X):
    """20 rows of X spread over the data, then the threshold edge rows of tree models."""
    rows = X.iloc[np.linspace(0, len(X) - 1, 20).astype(int)].to_numpy(dtype=np.float64)
    edge = []
    for k, (feature, t) in enumerate(root_splits(model)):
        for v in near(t):
            row = rows[k % len(rows)].copy()
            row[feature] = v
            edge.append(row)
    return np.vstack([rows] + edge) if edge else rows


def main(argv):
    if len(argv) != 2:
        print("usage: python check_sklearn_import.py WORKDIR", file=sys.stderr)
        return 1
    import mlflow.sklearn
    from mlflow.models import infer_signature

    workdir = argv[1]
    os.makedirs(workdir, exist_ok=True)
    data = datasets()
    names = []
    for name, (dataset, model) in models().items():
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            print("%s exists; pass an empty WORKDIR" % path, file=sys.stderr)
            return 1
        X, y = data[dataset]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X) if y is None else model.fit(X, y)
            signature = infer_signature(X) if y is None else infer_signature(X, y)
            # skops (mlflow's default format) does not trust tree arrays without being told.
            fmt = "cloudpickle" if root_splits(model) else "skops"
            mlflow.sklearn.save_model(model, path, signature=signature, serialization_format=fmt)
            rows = pd.DataFrame(fixed_rows(model, X), columns=X.columns)
            expected = model.predict(rows).tolist()
            proba = model.predict_proba(rows).tolist() if hasattr(model, "predict_proba") else None
        files = {"rows": {"columns": list(X.columns), "data": rows.to_numpy().tolist()},
                 "expected": expected}
        if proba is not None:
            files["expected_proba"] = proba
        for suffix, content in files.items():
            with open(os.path.join(workdir, "%s.%s.json" % (name, suffix)), "w") as f:
                json.dump(content, f)
        names.append(name)
    print(json.dumps(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
