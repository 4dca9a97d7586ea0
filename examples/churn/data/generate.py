#!/usr/bin/env python3
"""Writes data/customers.csv: 2,000 synthetic telecom customers, the same file every time.

Columns: an identifier, a text category (`plan`), an int category (`region`), numbers with
missing values (`monthly_charges`, `support_calls`), and the label `churned` (yes/no).
Churn rises with support calls and charges, falls with tenure and on the premium plan.
Standard library only:  python3 data/generate.py
"""
import csv
import math
import os
import random

rng = random.Random(20261201)
plans = [("basic", 0.5), ("standard", 0.35), ("premium", 0.15)]
rows = []
for i in range(2000):
    plan = rng.choices([p for p, _ in plans], [w for _, w in plans])[0]
    region = rng.choice([1, 2, 3, 4, 5])
    tenure = int(rng.expovariate(1 / 24)) % 72 + 1
    base = {"basic": 30.0, "standard": 55.0, "premium": 85.0}[plan]
    charges = round(base + rng.gauss(0, 8) + (5 if region == 3 else 0), 2)
    calls = min(int(rng.expovariate(1 / 1.5)), 12)
    z = (
        -1.2
        + 0.45 * calls
        + 0.025 * (charges - 50)
        - 0.05 * tenure
        - (0.8 if plan == "premium" else 0.0)
        + (0.4 if region == 5 else 0.0)
    )
    churned = "yes" if rng.random() < 1 / (1 + math.exp(-z)) else "no"
    # Some customers have no billing record yet, some no support history.
    charges_cell = "" if rng.random() < 0.05 else f"{charges:.2f}"
    calls_cell = "" if rng.random() < 0.03 else str(calls)
    rows.append([f"C{i:05d}", plan, region, tenure, charges_cell, calls_cell, churned])

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "customers.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["customer_id", "plan", "region", "tenure_months", "monthly_charges", "support_calls", "churned"])
    w.writerows(rows)
