#!/usr/bin/env python3
"""The churn example's transform: raw customer records in, model features out.

mlctl runs it with MLCTL_INPUT_CUSTOMERS_RAW (the input dataset's file) and MLCTL_OUTPUT
(where to write the derived table), on the local target as a process, on SageMaker as a
Processing job: the same contract. Standard library only.

It keeps every column and adds two: `charges_per_tenure_year` (monthly charges scaled by
how long the customer stayed) and `heavy_support` (3 or more support calls). Missing inputs
stay missing: mlctl's preprocessing fills them the same way on every target.
"""
import csv
import os

src = os.environ["MLCTL_INPUT_CUSTOMERS_RAW"]
out = os.environ["MLCTL_OUTPUT"]
with open(src, newline="") as f:
    rows = list(csv.DictReader(f))
fields = list(rows[0].keys()) if rows else []
label = "churned"
extra = ["charges_per_tenure_year", "heavy_support"]
header = [c for c in fields if c != label] + extra + [label]
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in rows:
        charges, tenure, calls = r["monthly_charges"], r["tenure_months"], r["support_calls"]
        r["charges_per_tenure_year"] = (
            "" if charges == "" else f"{float(charges) * 12 / max(int(tenure), 1):.4f}"
        )
        r["heavy_support"] = "" if calls == "" else ("yes" if int(calls) >= 3 else "no")
        w.writerow(r)
print(f"features: {len(rows)} customers -> {out}")
