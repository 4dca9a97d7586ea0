"""Predict with an mlctl portable model from Python: an MLflow ``python_function`` loader.

An mlctl model directory holds ``model.json`` (the manifest: input columns, their encoding,
the output and its classes) and ``weights.json`` (the fitted estimator). This module
predicts exactly as mlctl does -- the same input rules, the same encoding (one-hot
categories, the training mean for a missing number) and the same arithmetic, operation by
operation -- with numpy only (pandas when given a DataFrame), on Python 3.8 or newer.

With MLflow, an exported model names this file as its ``loader_module`` and MLflow calls
``_load_pyfunc(DIR/model)``. Without MLflow::

    import mlctl_pyfunc
    model = mlctl_pyfunc.load("path/to/model")        # holds model.json + weights.json
    model.predict({"sepal_length": [5.1], ...})        # numpy array of predictions
    model.predict(rows, params={"output": "probabilities"})

Inputs: a pandas DataFrame or a dict of column -> list (columns by name; columns the model
does not take are ignored), a list of dicts (records), or a 2-D numpy array / list of rows
in the model's input order (``model.input_names``). Errors in the input raise ValueError
naming the 0-based row and the column.
"""

import json
import math
import os

import numpy as np

FORMAT = "mlctl-model"
"""``format`` in every manifest."""
FORMAT_VERSION = 1
"""The newest manifest version this module reads."""
LEAF = 4294967295
"""``feature`` of a leaf node in a tree (u32::MAX)."""


def load(path):
    """Load the mlctl model directory ``path`` (``model.json`` + its weights file)."""
    manifest_path = os.path.join(path, "model.json")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(
            "cannot read the mlctl manifest %s: %s; pass a directory holding model.json "
            "and weights.json" % (manifest_path, e)
        ) from e
    weights_name = manifest.get("weights", "weights.json")
    if ".." in weights_name or os.path.isabs(weights_name):
        raise ValueError(
            "%s: weights file %r must be inside the model directory"
            % (manifest_path, weights_name)
        )
    weights_path = os.path.join(path, weights_name)
    try:
        with open(weights_path, encoding="utf-8") as f:
            weights = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError("cannot read the mlctl weights %s: %s" % (weights_path, e)) from e
    return MlctlModel(manifest, weights)


def _load_pyfunc(data_path):
    """MLflow's entry point: ``data_path`` is the exported model's ``data`` directory."""
    return load(data_path)


class MlctlModel:
    """A loaded mlctl model; ``predict`` takes rows and returns predictions."""

    def __init__(self, manifest, weights):
        """Check ``manifest`` (model.json) and ``weights`` (weights.json) and prepare them."""
        if manifest.get("format") != FORMAT:
            raise ValueError(
                "not an mlctl model (format is %r, expected %r)" % (manifest.get("format"), FORMAT)
            )
        if manifest.get("formatVersion", 0) > FORMAT_VERSION:
            raise ValueError(
                "model format version %s is newer than this loader reads (%d); export the "
                "model again with the mlctl that trained it"
                % (manifest.get("formatVersion"), FORMAT_VERSION)
            )
        self.manifest = manifest
        self.task = manifest["task"]
        self.inputs = [_Input(f) for f in manifest["inputs"]]
        self.input_names = [i.name for i in self.inputs]
        output = manifest.get("output", {})
        self.classes = list(output.get("classes", []))
        self.class_values = _typed_classes(self.classes, output.get("labelType"))
        self.estimator = _estimator(weights)
        width = sum(i.width for i in self.inputs)
        expected = self.estimator.width
        if expected is not None and expected != width:
            raise ValueError(
                "the inputs encode to %d values but the weights expect %d" % (width, expected)
            )
        if self.task == "classification" and len(self.classes) != self.estimator.n_out:
            raise ValueError(
                "the manifest lists %d classes but the weights predict %d"
                % (len(self.classes), self.estimator.n_out)
            )

    def predict(self, model_input, params=None):
        """Predictions for ``model_input``: a numpy array, one per row.

        A classifier returns class labels typed as in the training data (numbers for an int
        or float label, bools for a bool label, else strings), a regressor floats, k-means
        cluster indices. ``params={"output": "probabilities"}`` (or MLflow's
        ``{"predict_method": "predict_proba"}``) returns class probabilities instead: a
        pandas DataFrame with one column per class (a 2-D array without pandas).
        """
        if _wants_probabilities(params):
            return self.predict_proba(model_input)
        scores = self._scores(model_input)
        if self.task == "classification":
            return self.class_values[np.argmax(scores, axis=1)]
        if self.task == "clustering":
            return scores[:, 0].astype(np.int64)
        return scores[:, 0]

    def predict_proba(self, model_input):
        """Class probabilities of ``model_input``, columns in class order (see ``predict``)."""
        if self.task != "classification":
            raise ValueError(
                "probabilities are only available from classifiers; this model's task is %s"
                % self.task
            )
        probs = self._scores(model_input)
        try:
            import pandas as pd
        except ImportError:
            return probs
        return pd.DataFrame(probs, columns=list(self.class_values))

    def _scores(self, model_input):
        """The estimator's outputs (probabilities, value or cluster), one row per input row."""
        raw = self._raw(model_input)
        return self.estimator.scores(self._encode(raw))

    def _raw(self, model_input):
        """Input rows in the raw layout: a number, a category's index, NaN when missing."""
        columns, n = _columns_of(model_input, self.inputs)
        raw = np.empty((n, len(self.inputs)))
        for j, (spec, values) in enumerate(zip(self.inputs, columns)):
            raw[:, j] = spec.raw(values, n)
        return raw

    def _encode(self, raw):
        """Raw rows -> the encoded matrix: missing numbers filled, categories one-hot."""
        blocks = []
        for j, spec in enumerate(self.inputs):
            x = raw[:, j]
            missing = np.isnan(x)
            if spec.categories is None:
                blocks.append(np.where(missing, spec.fill, x)[:, None])
            else:
                onehot = np.zeros((len(x), spec.width))
                rows = np.flatnonzero(~missing)
                onehot[rows, x[rows].astype(np.int64)] = 1.0
                blocks.append(onehot)
        if not blocks:
            return np.zeros((raw.shape[0], 0))
        return np.hstack(blocks)


def _wants_probabilities(params):
    """Whether inference ``params`` ask for class probabilities."""
    if not params:
        return False
    valid = {"output": ("label", "probabilities"), "predict_method": ("predict", "predict_proba")}
    for key, value in params.items():
        if key not in valid:
            raise ValueError(
                "unknown parameter %r; valid: output (label or probabilities), "
                "predict_method (predict or predict_proba)" % key
            )
        if value is not None and value not in valid[key]:
            raise ValueError(
                "parameter %s is %r; expected one of %s" % (key, value, ", ".join(valid[key]))
            )
    return params.get("output") == "probabilities" or params.get("predict_method") == "predict_proba"


def _typed_classes(classes, label_type):
    """Class names as the labels mlctl writes: numbers or bools for such labels, else text."""
    if label_type in ("int", "float"):
        try:
            return np.array([int(c) for c in classes], dtype=np.int64)
        except ValueError:
            pass
        values = []
        for c in classes:
            try:
                x = float(c)
            except ValueError:
                x = math.nan
            values.append(x if math.isfinite(x) else c)
        if all(isinstance(v, float) for v in values):
            return np.array(values, dtype=np.float64)
        return np.array(values, dtype=object)
    if label_type == "bool":
        values = [{"true": True, "false": False}.get(c, c) for c in classes]
        if all(isinstance(v, bool) for v in values):
            return np.array(values, dtype=bool)
        return np.array(values, dtype=object)
    return np.array(classes, dtype=object)


def _is_missing(v):
    """Whether one input value is missing: None, NaN, pandas' NA or NaT."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(v != v)
    return type(v).__name__ in ("NAType", "NaTType")


def _number_text(x):
    """A number as mlctl writes it (whole numbers without a fraction, else Rust's ``ryu``),
    which is how a number given for a categorical column is matched to its categories."""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    sign = "-" if x < 0 else ""
    mantissa, _, exp = ("%r" % abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    k = point - len(digits)
    if k >= 0 and point <= 16:
        return sign + digits + "0" * k + ".0"
    if 0 < point <= 16:
        return sign + digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return sign + "0." + "0" * -point + digits
    rest = "." + digits[1:] if len(digits) > 1 else ""
    return sign + digits[0] + rest + "e" + str(point - 1)


class _Input:
    """One input column of the manifest and how its values become raw numbers."""

    def __init__(self, feature):
        self.name = feature["name"]
        self.nullable = bool(feature.get("nullable", False))
        self.fill = float(feature.get("fill", 0.0))
        self.integer = feature.get("type") == "float" and feature.get("storage") == "int"
        if feature.get("type") == "category":
            self.categories = list(feature.get("categories", []))
            self.index = {c: i for i, c in enumerate(self.categories)}
            self.width = len(self.categories)
        else:
            self.categories = None
            self.width = 1

    def _error(self, row, problem):
        return ValueError("row %d, column `%s`: %s" % (row, self.name, problem))

    def raw(self, values, n):
        """The raw numbers of this column's ``values`` (n of them), checked as mlctl does."""
        if self.categories is None:
            x = self._numbers(values, n)
            bad = np.flatnonzero(np.isinf(x))
            if bad.size:
                raise self._error(bad[0], "%r is not a finite number" % float(x[bad[0]]))
            if self.integer:
                bad = np.flatnonzero(np.isfinite(x) & (x != np.round(x)))
                if bad.size:
                    raise self._error(bad[0], "expected an int, got %r" % float(x[bad[0]]))
        else:
            x = np.array([self._category(r, v) for r, v in enumerate(values)], dtype=np.float64)
        if not self.nullable:
            bad = np.flatnonzero(np.isnan(x))
            if bad.size:
                raise self._error(
                    bad[0],
                    "missing value (null or NaN), but the model was trained without missing "
                    "values in this column; send a value",
                )
        return x

    def _numbers(self, values, n):
        """Values of a numeric column as float64, NaN where missing."""
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            return values.astype(np.float64)
        x = np.empty(n)
        for r, v in enumerate(values):
            if _is_missing(v):
                x[r] = math.nan
            elif isinstance(v, (bool, np.bool_)):
                x[r] = 1.0 if v else 0.0
            elif isinstance(v, str):
                t = v.strip()
                try:
                    x[r] = float(t) if t else math.nan
                except ValueError:
                    raise self._error(r, "expected a number, got the string %r" % v) from None
            else:
                try:
                    x[r] = float(v)
                except (TypeError, ValueError):
                    raise self._error(r, "expected a number, got %r" % (v,)) from None
        return x

    def _category(self, row, v):
        """The index of one categorical value (NaN when missing)."""
        if _is_missing(v):
            return math.nan
        if isinstance(v, (bool, np.bool_)):
            text = "true" if v else "false"
        elif isinstance(v, (int, float, np.integer, np.floating)):
            text = _number_text(float(v))
        else:
            text = str(v)
        i = self.index.get(text)
        if i is None:
            raise self._error(
                row,
                "unknown category %r (known: %s)" % (text, ", ".join(self.categories)),
            )
        return float(i)


def _columns_of(model_input, inputs):
    """The values of each input column of ``model_input`` and the number of rows."""
    names = [i.name for i in inputs]
    if type(model_input).__name__ == "DataFrame":
        frame = model_input
        model_input = {str(c): frame[c] for c in frame.columns}
    if isinstance(model_input, dict):
        return _named_columns(model_input, inputs)
    if isinstance(model_input, (list, tuple)):
        if not model_input:
            return [np.empty(0) for _ in inputs], 0
        if isinstance(model_input[0], dict):
            return _record_columns(model_input, inputs)
    rows = model_input if isinstance(model_input, np.ndarray) else _object_rows(model_input)
    if rows.ndim != 2 or rows.shape[1] != len(inputs):
        raise ValueError(
            "expected rows of %d values (%s), got an array of shape %s; pass a DataFrame, a "
            "dict of column -> values, a list of records or a 2-D array in that column order"
            % (len(inputs), ", ".join(names), rows.shape)
        )
    return [rows[:, j] for j in range(len(inputs))], rows.shape[0]


def _object_rows(rows):
    """A list of rows as a 2-D object array (values keep their Python types)."""
    if not isinstance(rows, (list, tuple)):
        raise ValueError(
            "cannot predict on a %s; pass a DataFrame, a dict of column -> values, a list of "
            "records or a 2-D array" % type(rows).__name__
        )
    for r, row in enumerate(rows):
        if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != len(rows[0]):
            raise ValueError(
                "row %d: expected a list of %d values like row 0" % (r, len(rows[0]))
                if isinstance(rows[0], (list, tuple, np.ndarray))
                else "row %d: expected a list of values, got %r" % (r, row)
            )
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    for r, row in enumerate(rows):
        out[r, :] = list(row)
    return out


def _column_array(values):
    """Values of one named column as a numpy array (numeric dtype when they are numbers)."""
    if hasattr(values, "to_numpy") and hasattr(values, "dtype"):
        # A pandas Series: numbers (nullable ints too) as float64 with NaN for missing; bools
        # stay objects, since a categorical column matches them as "true" / "false".
        if getattr(values.dtype, "kind", "O") in "iuf":
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return values.to_numpy(dtype=object)
    if np.ndim(values) == 0:
        values = [values]
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        array = np.array(list(values), dtype=object)
    return array


def _named_columns(columns, inputs):
    """Input columns of a dict (or DataFrame) of column -> values."""
    arrays = {k: _column_array(v) for k, v in columns.items()}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(
            "the columns have different lengths (%s); give every column one value per row"
            % ", ".join(str(n) for n in sorted(lengths))
        )
    n = lengths.pop() if lengths else 0
    out = []
    for spec in inputs:
        if spec.name in arrays:
            out.append(arrays[spec.name])
        elif spec.nullable:
            out.append(np.full(n, np.nan))
        else:
            raise ValueError(
                "the input has no column `%s`, which the model needs (it takes %s)"
                % (spec.name, ", ".join(i.name for i in inputs))
            )
    return out, n


def _record_columns(records, inputs):
    """Input columns of a list of dicts (records)."""
    out = []
    for spec in inputs:
        values = np.empty(len(records), dtype=object)
        for r, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise ValueError("row %d: expected a dict of column: value pairs" % r)
            if spec.name not in rec and not spec.nullable:
                raise ValueError(
                    "row %d has no column `%s`; the model takes %s"
                    % (r, spec.name, ", ".join(i.name for i in inputs))
                )
            values[r] = rec.get(spec.name)
        out.append(values)
    return out, len(records)


def _estimator(weights):
    """The estimator of ``weights.json`` (``{"type": ..., "weights": {...}}``)."""
    kinds = {
        "linear": _Linear,
        "logistic": _Logistic,
        "tree": _Tree,
        "forest": _Forest,
        "boosting": _Boosting,
        "kmeans": _KMeans,
    }
    kind = weights.get("type")
    if kind not in kinds:
        raise ValueError(
            "unsupported estimator type %r in weights.json (known: %s); this loader may be "
            "older than the mlctl that wrote the model" % (kind, ", ".join(sorted(kinds)))
        )
    return kinds[kind](weights["weights"])


def _dot_rows(X, w, start):
    """``start + sum_j w[j] * X[:, j]``, summed left to right as mlctl does (not BLAS)."""
    acc = np.zeros(X.shape[0])
    for j in range(X.shape[1]):
        acc += w[j] * X[:, j]
    return start + acc


def _softmax(z):
    """Row-wise softmax, in mlctl's order of operations."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = np.zeros(z.shape[0])
    for c in range(z.shape[1]):
        s += e[:, c]
    return e / s[:, None]


class _Linear:
    """``intercept + coef . x``."""

    def __init__(self, w):
        self.coef = np.asarray(w["coef"], dtype=np.float64)
        self.intercept = float(w["intercept"])
        self.width = len(self.coef)
        self.n_out = 1

    def scores(self, X):
        return _dot_rows(X, self.coef, self.intercept)[:, None]


class _Logistic:
    """Multinomial logistic regression: softmax of one linear score per class."""

    def __init__(self, w):
        self.intercept = np.asarray(w["intercept"], dtype=np.float64)
        self.n_out = len(self.intercept)
        coef = np.asarray(w["coef"], dtype=np.float64)
        self.width = len(coef) // max(self.n_out, 1)
        self.coef = coef.reshape(self.n_out, self.width)

    def scores(self, X):
        z = np.empty((X.shape[0], self.n_out))
        for c in range(self.n_out):
            z[:, c] = _dot_rows(X, self.coef[c], self.intercept[c])
        return _softmax(z)


class _Tree:
    """A binary tree: ``x[feature] <= threshold`` goes left; leaves hold ``n_out`` values."""

    def __init__(self, w):
        self.feature = np.asarray(w["feature"], dtype=np.int64)
        self.threshold = np.asarray(w["threshold"], dtype=np.float64)
        self.left = np.asarray(w["left"], dtype=np.int64)
        self.right = np.asarray(w["right"], dtype=np.int64)
        self.n_out = int(w["n_out"])
        self.values = np.asarray(w["values"], dtype=np.float64).reshape(-1, max(self.n_out, 1))
        self.width = None

    def scores(self, X):
        """The leaf values reached by each row of X."""
        node = np.zeros(X.shape[0], dtype=np.int64)
        active = np.arange(X.shape[0])
        while active.size:
            at = node[active]
            inner = self.feature[at] != LEAF
            active, at = active[inner], at[inner]
            left = X[active, self.feature[at]] <= self.threshold[at]
            node[active] = np.where(left, self.left[at], self.right[at])
        return self.values[self.left[node]]


class _Forest:
    """The mean of its trees' leaf values, summed in tree order."""

    def __init__(self, w):
        self.trees = [_Tree(t) for t in w["trees"]]
        self.n_out = self.trees[0].n_out if self.trees else 1
        self.width = None

    def scores(self, X):
        out = np.zeros((X.shape[0], self.n_out))
        for t in self.trees:
            out += t.scores(X)
        return out / max(len(self.trees), 1)


class _Boosting:
    """Gradient-boosted trees: starting scores plus leaf values (learning rate included)."""

    def __init__(self, w):
        self.loss = w["loss"]
        self.init = np.asarray(w["init"], dtype=np.float64)
        self.trees = [_Tree(t) for t in w["trees"]]
        self.n_out = 1 if self.loss == "squared_error" else int(w["n_classes"])
        self.width = None

    def scores(self, X):
        n, m = X.shape[0], len(self.init)
        if self.loss in ("squared_error", "binary"):
            raw = np.full(n, self.init[0])
            for t in self.trees:
                raw += t.scores(X)[:, 0]
            if self.loss == "squared_error":
                return raw[:, None]
            p = 1.0 / (1.0 + np.exp(-raw))
            return np.stack([1.0 - p, p], axis=1)
        out = np.tile(self.init, (n, 1))
        for i, t in enumerate(self.trees):
            out[:, i % m] += t.scores(X)[:, 0]
        return _softmax(out)


class _KMeans:
    """The nearest centre (squared Euclidean distance; the first on ties)."""

    def __init__(self, w):
        self.width = int(w["d"])
        self.centers = np.asarray(w["centers"], dtype=np.float64).reshape(-1, max(self.width, 1))
        self.n_out = 1

    def scores(self, X):
        best = np.zeros(X.shape[0], dtype=np.int64)
        best_d = np.full(X.shape[0], np.inf)
        for c, center in enumerate(self.centers):
            d = np.zeros(X.shape[0])
            for j in range(self.width):
                diff = center[j] - X[:, j]
                d += diff * diff
            closer = d < best_d
            best[closer], best_d[closer] = c, d[closer]
        return best[:, None].astype(np.float64)
