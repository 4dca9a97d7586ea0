"""The MLflow tracking subset that Azure ML serves under a workspace's `mlFlowTrackingUri`
(`/mlflow/v1.0{W}/api/2.0/mlflow/...`), in memory.

Implemented, with MLflow's REST shapes (`{"error_code": ..., "message": ...}` on errors):
`experiments/get-by-name`, `experiments/get`, `experiments/create`, `runs/create`, `runs/get`,
`runs/update`, `runs/log-batch`, `runs/log-metric`, `runs/log-parameter`, `runs/set-tag`,
`runs/search` (filter: `tags.<key> = '<value>'`, `attributes.status = '<S>'`,
`attributes.run_name = '<n>'`, joined by AND; `max_results` + `page_token` paging),
`metrics/get-history`.
An Azure ML job's run has the job's name as its run id and lives in the job's experiment.
"""

from __future__ import annotations

import re
import threading
import time


class MlflowError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return {"error_code": self.code, "message": self.message}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _invalid(message: str) -> MlflowError:
    return MlflowError(400, "INVALID_PARAMETER_VALUE", message)


def _missing(message: str) -> MlflowError:
    return MlflowError(404, "RESOURCE_DOES_NOT_EXIST", message)


_CLAUSE = re.compile(
    r"""^\s*(?:(tags|tag|attributes|attribute|attr|run|params|param|metrics|metric)\.)?
         (?:`([^`]+)`|"([^"]+)"|([\w.:\-]+))\s*(=|!=)\s*'((?:[^'\\]|\\.)*)'\s*$""",
    re.X,
)


class Tracking:
    """Experiments and runs of one workspace. Thread-safe."""

    def __init__(self):
        self.lock = threading.RLock()
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.metrics: dict[str, list[dict]] = {}
        self._next_experiment = 1
        self.experiment("Default")

    # --- used by the job runner -------------------------------------------------------------

    def experiment(self, name: str) -> str:
        """The id of the experiment `name`, created when missing."""
        with self.lock:
            for exp in self.experiments.values():
                if exp["name"] == name:
                    return exp["experiment_id"]
            eid = str(self._next_experiment)
            self._next_experiment += 1
            self.experiments[eid] = {
                "experiment_id": eid,
                "name": name,
                "artifact_location": f"azureml://experiments/{name}",
                "lifecycle_stage": "active",
                "creation_time": _now_ms(),
                "last_update_time": _now_ms(),
                "tags": [],
            }
            return eid

    def start_run(self, run_id: str, experiment: str, run_name: str, tags: dict[str, str]) -> None:
        with self.lock:
            eid = self.experiment(experiment)
            self.runs[run_id] = {
                "info": {
                    "run_id": run_id,
                    "run_uuid": run_id,
                    "run_name": run_name,
                    "experiment_id": eid,
                    "status": "SCHEDULED",
                    "start_time": _now_ms(),
                    "lifecycle_stage": "active",
                    "artifact_uri": f"azureml://experiments/{experiment}/runs/{run_id}/artifacts",
                },
                "params": {},
                "tags": {"mlflow.runName": run_name, **tags},
            }
            self.metrics[run_id] = []

    def set_status(self, run_id: str, status: str) -> None:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                return
            run["info"]["status"] = status
            if status in ("FINISHED", "FAILED", "KILLED"):
                run["info"]["end_time"] = _now_ms()

    def latest(self, run_id: str, key: str) -> float | None:
        """The last value logged for `key` (highest step, then latest timestamp)."""
        with self.lock:
            values = [m for m in self.metrics.get(run_id, []) if m["key"] == key]
            if not values:
                return None
            return max(values, key=lambda m: (m["step"], m["timestamp"]))["value"]

    # --- REST -------------------------------------------------------------------------------

    def _run_view(self, run_id: str) -> dict:
        run = self.runs[run_id]
        latest: dict[str, dict] = {}
        for m in self.metrics[run_id]:
            cur = latest.get(m["key"])
            if cur is None or (m["step"], m["timestamp"]) >= (cur["step"], cur["timestamp"]):
                latest[m["key"]] = m
        return {
            "info": dict(run["info"]),
            "data": {
                "metrics": [dict(m) for m in latest.values()],
                "params": [{"key": k, "value": v} for k, v in run["params"].items()],
                "tags": [{"key": k, "value": v} for k, v in run["tags"].items()],
            },
        }

    def _run(self, body: dict) -> str:
        run_id = body.get("run_id") or body.get("run_uuid")
        if not isinstance(run_id, str) or not run_id:
            raise _invalid("Missing value for required parameter 'run_id'.")
        if run_id not in self.runs:
            raise _missing(f"Run with id={run_id} not found")
        return run_id

    def _log_metric(self, run_id: str, m: dict) -> None:
        key, value = m.get("key"), m.get("value")
        if not isinstance(key, str) or not key:
            raise _invalid("Missing value for required parameter 'key'.")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if not (isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity")):
                raise _invalid(f"Invalid value {value!r} for parameter 'value' of metric {key!r}: a number")
            value = float(value.replace("Infinity", "inf"))
        ts = m.get("timestamp")
        if not isinstance(ts, int):
            raise _invalid(f"Missing value for required parameter 'timestamp' of metric {key!r}.")
        step = m.get("step", 0)
        if not isinstance(step, int):
            raise _invalid(f"Invalid value {step!r} for parameter 'step' of metric {key!r}")
        self.metrics[run_id].append({"key": key, "value": float(value), "timestamp": ts, "step": step})

    def handle(self, method: str, op: str, query: dict[str, str], body: dict | None) -> dict:
        """Answer `method api/2.0/mlflow/<op>`; raises MlflowError."""
        body = body or {}
        with self.lock:
            if method == "GET" and op == "experiments/get-by-name":
                name = query.get("experiment_name")
                for exp in self.experiments.values():
                    if exp["name"] == name:
                        return {"experiment": dict(exp)}
                raise _missing(f"Could not find experiment with name {name!r}")
            if method == "GET" and op == "experiments/get":
                exp = self.experiments.get(query.get("experiment_id", ""))
                if exp is None:
                    raise _missing(f"No Experiment with id={query.get('experiment_id')} exists")
                return {"experiment": dict(exp)}
            if method == "POST" and op == "experiments/create":
                name = body.get("name")
                if not isinstance(name, str) or not name:
                    raise _invalid("Missing value for required parameter 'name'.")
                if any(e["name"] == name for e in self.experiments.values()):
                    raise MlflowError(400, "RESOURCE_ALREADY_EXISTS", f"Experiment {name!r} already exists.")
                return {"experiment_id": self.experiment(name)}
            if method == "POST" and op == "runs/create":
                eid = body.get("experiment_id", "1")
                exp = self.experiments.get(str(eid))
                if exp is None:
                    raise _missing(f"No Experiment with id={eid} exists")
                run_id = f"run-{len(self.runs) + 1}-{_now_ms()}"
                tags = {t["key"]: t["value"] for t in body.get("tags", []) if isinstance(t, dict)}
                self.start_run(run_id, exp["name"], body.get("run_name") or run_id, tags)
                self.runs[run_id]["info"]["status"] = "RUNNING"
                return {"run": self._run_view(run_id)}
            if method == "GET" and op == "runs/get":
                run_id = self._run(query)
                return {"run": self._run_view(run_id)}
            if method == "POST" and op == "runs/update":
                run_id = self._run(body)
                info = self.runs[run_id]["info"]
                if "status" in body:
                    if body["status"] not in ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"):
                        raise _invalid(f"Invalid value {body['status']!r} for parameter 'status'")
                    info["status"] = body["status"]
                if "end_time" in body:
                    info["end_time"] = body["end_time"]
                if body.get("run_name"):
                    info["run_name"] = body["run_name"]
                return {"run_info": dict(info)}
            if method == "POST" and op == "runs/log-batch":
                run_id = self._run(body)
                metrics = body.get("metrics", [])
                if not isinstance(metrics, list) or len(metrics) > 1000:
                    raise _invalid("'metrics' must be a list of at most 1000 entries")
                for m in metrics:
                    self._log_metric(run_id, m)
                for p in body.get("params", []):
                    self.runs[run_id]["params"][p["key"]] = str(p["value"])
                for t in body.get("tags", []):
                    self.runs[run_id]["tags"][t["key"]] = str(t["value"])
                return {}
            if method == "POST" and op == "runs/log-metric":
                run_id = self._run(body)
                self._log_metric(run_id, body)
                return {}
            if method == "POST" and op == "runs/log-parameter":
                run_id = self._run(body)
                self.runs[run_id]["params"][body["key"]] = str(body.get("value"))
                return {}
            if method == "POST" and op == "runs/set-tag":
                run_id = self._run(body)
                self.runs[run_id]["tags"][body["key"]] = str(body.get("value"))
                return {}
            if method == "GET" and op == "metrics/get-history":
                run_id = self._run(query)
                key = query.get("metric_key")
                return {"metrics": [dict(m) for m in self.metrics[run_id] if m["key"] == key]}
            if method == "POST" and op == "runs/search":
                return self._search(body)
        raise MlflowError(404, "ENDPOINT_NOT_FOUND", f"{method} api/2.0/mlflow/{op} is not served by the fake")

    def _search(self, body: dict) -> dict:
        ids = [str(i) for i in body.get("experiment_ids", [])]
        if not ids:
            raise _invalid("'experiment_ids' must name at least one experiment")
        clauses = []
        text = (body.get("filter") or "").strip()
        if text:
            for part in re.split(r"\s+and\s+", text, flags=re.I):
                m = _CLAUSE.match(part)
                if not m:
                    raise _invalid(f"Invalid filter {part!r}: the fake supports tags.<key> = '<v>' and attributes.status/run_name")
                kind, name = m.group(1) or "attributes", m.group(2) or m.group(3) or m.group(4)
                clauses.append((kind, name, m.group(5), m.group(6).replace("\\'", "'")))

        def keep(run: dict) -> bool:
            for kind, name, op, value in clauses:
                if kind.startswith("tag"):
                    have = run["tags"].get(name)
                elif kind.startswith("param"):
                    have = run["params"].get(name)
                elif kind.startswith("attr") or kind == "run":
                    have = run["info"].get({"run_name": "run_name", "status": "status", "run_id": "run_id"}.get(name, name))
                else:
                    raise _invalid(f"the fake does not filter on {kind}.{name}")
                if (have == value) != (op == "="):
                    return False
            return True

        found = [
            rid
            for rid, run in self.runs.items()
            if run["info"]["experiment_id"] in ids and run["info"]["lifecycle_stage"] == "active" and keep(run)
        ]
        found.sort(key=lambda rid: (-self.runs[rid]["info"]["start_time"], rid))
        limit = int(body.get("max_results", 1000))
        start = int(body.get("page_token") or 0)
        page = found[start : start + limit]
        out: dict = {"runs": [self._run_view(rid) for rid in page]}
        if start + limit < len(found):
            out["next_page_token"] = str(start + limit)
        return out
