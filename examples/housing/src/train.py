"""Ridge regression for house prices, in plain Python (standard library only).

Runs unchanged under mlctl's local target and SageMaker script mode: it reads the
channels and hyperparameters from the SM_* environment, writes the model to SM_MODEL_DIR,
and reports metrics both on stdout (`rmse=...`, scraped by the TrainingJob's metric regexes)
and in SM_MODEL_DIR/metrics.json.

Hyperparameters:
    alpha   L2 penalty on the standardised weights (default 1.0)
    target  the label column (default: $MLCTL_TARGET_COLUMN, else `price`)
"""
import csv
import glob
import json
import math
import os
import sys


def hyperparameters():
    # SM_HPS keeps types; hyperparameters.json (what SageMaker writes) holds strings.
    if "SM_HPS" in os.environ:
        return json.loads(os.environ["SM_HPS"])
    path = os.path.join(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"), "hyperparameters.json")
    with open(path) as f:
        return json.load(f)


def read_channel(name):
    directory = os.environ.get(f"SM_CHANNEL_{name.upper()}", f"/opt/ml/input/data/{name}")
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "*.csv"))):
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


class Encoder:
    """Numeric columns standardised; text columns one-hot encoded (first category dropped)."""

    def __init__(self, rows, target):
        self.columns = [c for c in rows[0] if c != target]
        self.numeric, self.categories, self.mean, self.std = [], {}, {}, {}
        for c in self.columns:
            values = [r[c] for r in rows]
            try:
                xs = [float(v) for v in values]
            except ValueError:
                self.categories[c] = sorted(set(values))
                continue
            self.numeric.append(c)
            m = sum(xs) / len(xs)
            self.mean[c] = m
            self.std[c] = math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)) or 1.0

    def names(self):
        out = list(self.numeric)
        for c, cats in self.categories.items():
            out.extend(f"{c}={v}" for v in cats[1:])
        return out

    def row(self, r):
        out = [(float(r[c]) - self.mean[c]) / self.std[c] for c in self.numeric]
        for c, cats in self.categories.items():
            out.extend(1.0 if r[c] == v else 0.0 for v in cats[1:])
        return out


def solve(a, b):
    """Gaussian elimination with partial pivoting: a x = b."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-12:
            raise ValueError("singular system: increase alpha")
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for k in range(col, n + 1):
                m[r][k] -= f * m[col][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def fit(rows, target, alpha):
    enc = Encoder(rows, target)
    xs = [enc.row(r) for r in rows]
    ys = [float(r[target]) for r in rows]
    y_mean = sum(ys) / len(ys)
    d = len(xs[0])
    # (X'X + alpha I) w = X'(y - mean); the intercept is the mean (features are centred).
    xtx = [[sum(x[i] * x[j] for x in xs) + (alpha if i == j else 0.0) for j in range(d)] for i in range(d)]
    xty = [sum(x[i] * (y - y_mean) for x, y in zip(xs, ys)) for i in range(d)]
    w = solve(xtx, xty)
    return enc, w, y_mean


def evaluate(enc, w, intercept, rows, target):
    ys = [float(r[target]) for r in rows]
    preds = [intercept + sum(a * b for a, b in zip(w, enc.row(r))) for r in rows]
    n = len(ys)
    mean = sum(ys) / n
    sse = sum((y - p) ** 2 for y, p in zip(ys, preds))
    sst = sum((y - mean) ** 2 for y in ys) or 1.0
    return {"rmse": math.sqrt(sse / n), "mae": sum(abs(y - p) for y, p in zip(ys, preds)) / n, "r2": 1.0 - sse / sst}


def main():
    hps = hyperparameters()
    alpha = float(hps.get("alpha", 1.0))
    target = hps.get("target") or os.environ.get("MLCTL_TARGET_COLUMN") or "price"
    train = read_channel("train")
    test = read_channel("test") or train
    if not train:
        sys.exit("no training data in the train channel")
    print(f"training ridge regression on {len(train)} rows (alpha={alpha}), testing on {len(test)}")
    enc, w, intercept = fit(train, target, alpha)
    metrics = evaluate(enc, w, intercept, test, target)
    for name, value in metrics.items():
        print(f"{name}={value:.4f}")

    model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
    os.makedirs(model_dir, exist_ok=True)
    model = {
        "kind": "ridge_regression",
        "target": target,
        "alpha": alpha,
        "intercept": intercept,
        "weights": dict(zip(enc.names(), w)),
        "numeric": {c: {"mean": enc.mean[c], "std": enc.std[c]} for c in enc.numeric},
        "categories": enc.categories,
    }
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(model, f, indent=2)
    with open(os.path.join(model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)


if __name__ == "__main__":
    main()
