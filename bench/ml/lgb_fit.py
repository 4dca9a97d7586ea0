"""LightGBM / HistGradientBoosting side of the boosting bench: fit on train.csv, score on
test.csv, print one JSON line. Usage: lgb_fit.py lightgbm|hist TRAIN TEST ROUNDS DEPTH LR"""
import json
import sys
import time

import numpy as np
import pandas as pd

tool, train_csv, test_csv = sys.argv[1], sys.argv[2], sys.argv[3]
rounds, depth, lr = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
train, test = pd.read_csv(train_csv), pd.read_csv(test_csv)
X, y = train.drop(columns=["label"]).to_numpy(), train["label"].to_numpy()
Xt, yt = test.drop(columns=["label"]).to_numpy(), test["label"].to_numpy()
regression = np.issubdtype(y.dtype, np.floating)
if tool == "lightgbm":
    import lightgbm as lgb

    cls = lgb.LGBMRegressor if regression else lgb.LGBMClassifier
    model = cls(n_estimators=rounds, max_depth=depth, num_leaves=2**depth, learning_rate=lr,
                n_jobs=2, verbose=-1)
else:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    model = cls(max_iter=rounds, max_depth=depth, learning_rate=lr, early_stopping=False)
t = time.perf_counter()
model.fit(X, y)
fit_s = time.perf_counter() - t
p = model.predict(Xt)
if regression:
    score = ("r2", 1 - ((p - yt) ** 2).sum() / ((yt - yt.mean()) ** 2).sum())
else:
    score = ("accuracy", float((p == yt).mean()))
print(json.dumps({"tool": tool, "fit_seconds": round(fit_s, 3), score[0]: round(float(score[1]), 4)}))
