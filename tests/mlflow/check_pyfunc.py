"""Check that MLflow's pyfunc loader predicts what mlctl serves for an exported model.

Usage::

    python check_pyfunc.py EXPORTED_DIR ROWS_JSON EXPECTED_JSON

EXPORTED_DIR is an MLflow model directory exported by mlctl (python_function flavor with
``loader_module: mlctl_pyfunc``). ROWS_JSON holds ``{"columns": [...], "data": [[...], ...]}``
and EXPECTED_JSON the predictions mlctl served for those rows: the ``predictions`` list of
its /invocations answer. When that list holds lists (the answer to ``predict_proba``), the
rows are predicted with ``params={"output": "probabilities"}`` and compared as class
probabilities.

Loads EXPORTED_DIR with ``mlflow.pyfunc.load_model``, predicts a pandas DataFrame of the
rows and compares: labels and cluster indices exactly (an int label must come back as an
int, a bool as a bool, a string as a string), numbers and probabilities to 1e-9 (relative
to the value when it is larger than 1).

Exit status: 0 all match; 1 some differ (the first 5 are printed); 2 bad arguments or
files, or the model fails to load or predict.
"""

import json
import sys

TOLERANCE = 1e-9


def close(got, want):
    """Whether number ``got`` is within TOLERANCE of ``want``."""
    return abs(got - want) <= TOLERANCE * max(1.0, abs(want))


def same(got, want):
    """Whether one prediction matches: typed labels exactly, floats to TOLERANCE."""
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(same(g, w) for g, w in zip(got, want)))
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, float) and isinstance(got, (int, float)):
        return close(got, want)
    if isinstance(want, int) and isinstance(got, float):
        return close(got, want)  # a served regression value that happens to be whole
    return type(got) is type(want) and got == want


def predictions(model, rows, probabilities):
    """The model's predictions of ``rows`` as plain Python values, one per row."""
    import pandas as pd

    frame = pd.DataFrame(rows["data"], columns=rows["columns"])
    if probabilities:
        out = model.predict(frame, params={"output": "probabilities"})
        return out.to_numpy().tolist() if hasattr(out, "to_numpy") else out.tolist()
    out = model.predict(frame)
    return out.tolist() if hasattr(out, "tolist") else list(out)


def main(argv):
    if len(argv) != 4:
        print("usage: python check_pyfunc.py EXPORTED_DIR ROWS_JSON EXPECTED_JSON", file=sys.stderr)
        return 2
    exported, rows_path, expected_path = argv[1:]
    try:
        with open(rows_path) as f:
            rows = json.load(f)
        with open(expected_path) as f:
            expected = json.load(f)
        if not isinstance(rows, dict) or "columns" not in rows or "data" not in rows:
            raise ValueError('%s must hold {"columns": [...], "data": [[...]]}' % rows_path)
        if not isinstance(expected, list):
            raise ValueError("%s must hold a JSON list of predictions" % expected_path)
    except (OSError, ValueError) as e:
        print("check_pyfunc: %s" % e, file=sys.stderr)
        return 2
    probabilities = bool(expected) and isinstance(expected[0], list)
    try:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(exported)
        got = predictions(model, rows, probabilities)
    except Exception as e:
        print("check_pyfunc: %s: %s: %s" % (exported, type(e).__name__, e), file=sys.stderr)
        return 2
    if len(got) != len(expected):
        print("check_pyfunc: %d predictions for %d expected" % (len(got), len(expected)))
        return 1
    mismatches = [(i, g, w) for i, (g, w) in enumerate(zip(got, expected)) if not same(g, w)]
    for i, g, w in mismatches[:5]:
        print("row %d: pyfunc predicted %r, mlctl served %r" % (i, g, w))
    if mismatches:
        print("%d of %d rows differ" % (len(mismatches), len(expected)))
        return 1
    print("%d rows match%s" % (len(expected), " (probabilities)" if probabilities else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
