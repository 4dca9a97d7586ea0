"""scikit-learn side of bench/ml/compare.sh: fit on train.csv, score on test.csv, print JSON."""
import json
import sys
import time

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

algorithm, train_csv, test_csv = sys.argv[1], sys.argv[2], sys.argv[3]
n_estimators = int(sys.argv[4]) if len(sys.argv) > 4 else 100

t0 = time.perf_counter()
train = pd.read_csv(train_csv)
test = pd.read_csv(test_csv)
read_s = time.perf_counter() - t0
X, y = train.drop(columns=["label"]).to_numpy(), train["label"].to_numpy()
Xt, yt = test.drop(columns=["label"]).to_numpy(), test["label"].to_numpy()

if algorithm == "logistic_regression":
    model = LogisticRegression(C=1.0, max_iter=100)
elif algorithm == "random_forest":
    model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=2, random_state=0)
else:
    sys.exit(f"unknown algorithm {algorithm}")

t1 = time.perf_counter()
model.fit(X, y)
fit_s = time.perf_counter() - t1
acc = float((model.predict(Xt) == yt).mean())
print(json.dumps({"algorithm": algorithm, "fit_seconds": round(fit_s, 3),
                  "read_seconds": round(read_s, 3), "accuracy": round(acc, 4)}))
