"""Evidently's DataDriftPreset on the benchmark's data, with its default method per column:
prints the seconds it took (reading the CSVs apart) and its verdicts as JSON.

    python3 bench/drift/evidently_drift.py DIR
"""

import json
import pathlib
import sys
import time

import pandas as pd
from evidently.legacy.metric_preset import DataDriftPreset
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report

d = pathlib.Path(sys.argv[1])
t0 = time.perf_counter()
ref = pd.read_csv(d / "baseline.csv")
cur = pd.read_csv(d / "current.csv")
read = time.perf_counter() - t0
numeric = [c for c in ref.columns if c.startswith("n")]
categorical = [c for c in ref.columns if c.startswith("c")]
mapping = ColumnMapping(target=None, numerical_features=numeric, categorical_features=categorical)
t1 = time.perf_counter()
report = Report(metrics=[DataDriftPreset()])
report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
result = next(m["result"] for m in report.as_dict()["metrics"] if "drift_by_columns" in m["result"])
compute = time.perf_counter() - t1
print(json.dumps({
    "read_seconds": read,
    "drift_seconds": compute,
    "dataset_drift": bool(result["dataset_drift"]),
    "columns": {n: {"method": c["stattest_name"], "score": float(c["drift_score"]), "drifted": bool(c["drift_detected"])}
                for n, c in result["drift_by_columns"].items()},
}))
