"""Reads back what mlctl logged to an MLflow tracking server, with MLflow's own client.

    python readback.py TRACKING_URI EXPERIMENT MODEL [ROWS_JSON]

Prints one JSON object: the experiment's runs (name, status, params, metrics, tags and
artifact paths), the registered model's versions (number, aliases, tags, source) and, with
ROWS_JSON ({"columns": [...], "data": [[...]]}), the predictions of
`mlflow.pyfunc.load_model("models:/MODEL@champion")` on those rows.
"""
import json
import sys

from mlflow.tracking import MlflowClient


def artifact_paths(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(artifact_paths(client, run_id, f.path))
        else:
            out.append(f.path)
    return out


def main():
    uri, experiment, model = sys.argv[1:4]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    result = {"experiment": None, "runs": [], "versions": [], "predictions": None}
    if exp is None:
        print(json.dumps(result))
        return
    result["experiment"] = exp.experiment_id
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        result["runs"].append(
            {
                "id": r.info.run_id,
                "name": r.info.run_name,
                "status": r.info.status,
                "params": r.data.params,
                "metrics": r.data.metrics,
                "tags": r.data.tags,
                "artifacts": sorted(artifact_paths(client, r.info.run_id)),
                "metricHistory": {
                    k: len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics
                },
            }
        )
    try:
        registered = client.get_registered_model(model)
    except Exception:  # noqa: BLE001 - absent is an answer here
        registered = None
    if registered is not None:
        result["aliases"] = dict(registered.aliases)
        for v in client.search_model_versions(f"name='{model}'"):
            result["versions"].append(
                {"version": v.version, "tags": v.tags, "source": v.source, "runId": v.run_id}
            )
    if len(sys.argv) > 4 and registered is not None:
        import mlflow.pyfunc
        import pandas as pd

        import mlflow

        mlflow.set_tracking_uri(uri)
        rows = json.load(open(sys.argv[4]))
        frame = pd.DataFrame(rows["data"], columns=rows["columns"])
        loaded = mlflow.pyfunc.load_model(f"models:/{model}@champion")
        result["predictions"] = [
            p.item() if hasattr(p, "item") else p for p in list(loaded.predict(frame))
        ]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
