"""Reference drift values for crates/ml/tests/drift_reference.rs.

Writes a fixed, seeded dataset (baseline.csv: 2,000 rows, sample.csv: 1,000 rows) and the
statistics scipy computes on it, with Evidently's verdicts when Evidently is installed, to
expected.json. The Rust test reads the three files and needs no Python; the files are
committed. Regenerate (takes a few minutes, mostly the install):

    python3 -m venv /tmp/drift-venv
    /tmp/drift-venv/bin/pip install scipy numpy pandas evidently
    /tmp/drift-venv/bin/python crates/ml/tests/reference/make_reference.py

Columns: `age` (same normal), `income` (lognormal, scaled by 1.25 in the sample), `tenure`
(normal, shifted by 0.5 std), `visits` (4 values, same), `plan` (3 categories, same),
`region` (4 categories, proportions moved), `promo` (binary, 30% to 40% "yes"), `churned` (the label) and `id`: the test
checks only the features, never `churned` and `id`.

Two baselines are compared with the sample: all 2,000 rows (Evidently's defaults for more
than 1,000 rows: Wasserstein and Jensen-Shannon distances) and the first 1,000 ("small":
Kolmogorov-Smirnov, chi-squared and Z tests). Formulas follow Evidently 0.7's legacy
stattests (chi-squared expected = reference counts scaled to the sample size, over the union
of values; Jensen-Shannon with scipy's default natural log over value proportions;
Wasserstein / np.std(reference)); KS uses ks_2samp(method="asymp").
"""

import json
import pathlib

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

HERE = pathlib.Path(__file__).parent
FEATURES = ["age", "income", "tenure", "visits", "plan", "region", "promo"]
NUMERIC = ["age", "income", "tenure"]
FEW_VALUES = ["visits"]


def make(n, rng, moved):
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": np.round(rng.normal(40, 10, n), 3),
            "income": np.round(rng.lognormal(10, 0.5, n) * (1.25 if moved else 1.0), 2),
            "tenure": np.round(rng.normal(24 + (4 if moved else 0), 8, n), 3),
            "visits": rng.choice([0, 1, 2, 3], n, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["basic", "pro", "enterprise"], n, p=[0.6, 0.3, 0.1]),
            "region": rng.choice(
                ["north", "south", "east", "west"],
                n,
                p=[0.4, 0.3, 0.2, 0.1] if moved else [0.25, 0.25, 0.25, 0.25],
            ),
            "promo": rng.choice(["no", "yes"], n, p=[0.6, 0.4] if moved else [0.7, 0.3]),
            "churned": rng.choice(["no", "yes"], n, p=[0.8, 0.2]),
        }
    )


def proportions(ref, cur):
    keys = sorted(set(ref.unique()) | set(cur.unique()), key=str)
    r = ref.value_counts()
    c = cur.value_counts()
    return (
        keys,
        np.array([r.get(k, 0) for k in keys], float),
        np.array([c.get(k, 0) for k in keys], float),
    )


def column(ref, cur, name):
    out = {}
    if name in NUMERIC:
        ks = stats.ks_2samp(ref, cur, method="asymp")
        out["ks"] = {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)}
        w = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        out["wasserstein"] = {"statistic": float(w)}
    else:
        keys, r, c = proportions(ref, cur)
        f_exp = r * (c.sum() / r.sum())
        chi = stats.chisquare(c, f_exp)
        out["chi_squared"] = {"statistic": float(chi.statistic), "p_value": float(chi.pvalue)}
        out["jensen_shannon"] = {"statistic": float(distance.jensenshannon(r / r.sum(), c / c.sum()))}
        out["l_infinity"] = {"statistic": float(np.max(np.abs(r / r.sum() - c / c.sum())))}
        if len(keys) == 2:
            # Evidently's proportion difference Z-test: the share of the second (sorted) value.
            n1, n2 = r.sum(), c.sum()
            p1, p2 = r[1] / n1, c[1] / n2
            pooled = (r[1] + c[1]) / (n1 + n2)
            z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
            out["z_test"] = {"statistic": float(z), "p_value": float(2 * stats.norm.sf(abs(z)))}
    return out


def evidently_verdicts(ref, cur):
    """Evidently's own default method, score and verdict per feature, or None."""
    try:
        from evidently.legacy.metric_preset import DataDriftPreset
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report
    except ImportError:
        return None
    mapping = ColumnMapping(
        target=None,
        numerical_features=NUMERIC + FEW_VALUES,
        categorical_features=["plan", "region", "promo"],
        id="id",
    )
    report = Report(metrics=[DataDriftPreset()])
    report.run(reference_data=ref[FEATURES + ["id"]], current_data=cur[FEATURES + ["id"]], column_mapping=mapping)
    for metric in report.as_dict()["metrics"]:
        result = metric["result"]
        if "drift_by_columns" in result:
            return {
                "dataset_drift": bool(result["dataset_drift"]),
                "share_of_drifted_columns": float(result["share_of_drifted_columns"]),
                "columns": {
                    name: {
                        "stattest": c["stattest_name"],
                        "score": float(c["drift_score"]),
                        "threshold": float(c["stattest_threshold"]),
                        "drifted": bool(c["drift_detected"]),
                    }
                    for name, c in result["drift_by_columns"].items()
                },
            }
    return None


def main():
    rng = np.random.default_rng(20240612)
    baseline = make(2000, rng, moved=False)
    sample = make(1000, rng, moved=True)
    baseline.to_csv(HERE / "baseline.csv", index=False)
    sample.to_csv(HERE / "sample.csv", index=False)
    expected = {"generated_by": "make_reference.py", "scipy": __import__("scipy").__version__}
    try:
        import evidently

        expected["evidently"] = evidently.__version__
    except ImportError:
        expected["evidently"] = None
    for label, ref in [("full", baseline), ("small", baseline.head(1000))]:
        expected[label] = {
            "rows": len(ref),
            "columns": {name: column(ref[name], sample[name], name) for name in FEATURES},
            "evidently": evidently_verdicts(ref, sample),
        }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
