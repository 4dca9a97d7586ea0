"""Writes the drift benchmark's data: baseline.csv (100,000 rows) and current.csv (1,000,000
rows), 20 features: 12 numeric and 8 categorical. In current, 3 numeric features are shifted
and 2 categorical ones have their proportions moved; the rest are drawn as in the baseline.

    python3 bench/drift/gen.py OUT_DIR [BASELINE_ROWS] [CURRENT_ROWS]
"""

import pathlib
import sys

import numpy as np
import pandas as pd

out = pathlib.Path(sys.argv[1])
n_ref = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
n_cur = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
rng = np.random.default_rng(7)
SHIFTED_NUM = {"n0": 0.3, "n1": 0.5, "n2": 1.0}  # in baseline standard deviations
SHIFTED_CAT = {"c0", "c1"}


def table(n, current):
    cols = {}
    for i in range(12):
        name = f"n{i}"
        x = rng.normal(10 * i, 1 + i, n) if i % 2 == 0 else rng.lognormal(1, 0.5, n) * (i + 1)
        if current and name in SHIFTED_NUM:
            x = x + SHIFTED_NUM[name] * np.std(x)
        cols[name] = np.round(x, 4)
    for i in range(8):
        name = f"c{i}"
        k = 5 + 2 * i
        p = np.arange(1, k + 1, dtype=float)
        if current and name in SHIFTED_CAT:
            p = p[::-1]
        p /= p.sum()
        cols[name] = rng.choice([f"v{j}" for j in range(k)], n, p=p)
    return pd.DataFrame(cols)


out.mkdir(parents=True, exist_ok=True)
table(n_ref, False).to_csv(out / "baseline.csv", index=False)
table(n_cur, True).to_csv(out / "current.csv", index=False)
