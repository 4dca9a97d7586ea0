"""How the fake runs Azure ML jobs: for real, on this machine.

A command job (`jobType: Command`):
1. Preparing: its code (`codeId` -> the code version's `codeUri`) and its inputs are
   downloaded from blob storage into a fresh directory; `uri_file` inputs become a file,
   `uri_folder` (and model/mltable) inputs a directory, `literal` inputs their value.
2. Running: `${{inputs.X}}` / `${{outputs.Y}}` (and `${{search_space.Z}}` in sweep trials) in
   the command are replaced by those paths and values, and `bash -c <command>` runs in the code
   directory with a scrubbed environment: PATH, HOME, LANG and LC_ALL kept, TMPDIR set to the
   job's own, the job's `environmentVariables`, and MLFLOW_TRACKING_URI (the fake's tracking
   base, http), MLFLOW_TRACKING_TOKEN, MLFLOW_RUN_ID (= the job name), MLFLOW_EXPERIMENT_ID,
   MLFLOW_EXPERIMENT_NAME, AZUREML_RUN_ID. stdout and stderr go to `user_logs/std_log.txt`.
   `limits.timeout` is enforced.
3. Finalizing: every output folder is uploaded to its `uri` (outputs without one get a default
   under the fake's `fake-artifacts` container, which the job then shows), and the log to the
   run's artifact folder (output `default`) and to an output named `logs` when there is one.
4. Completed, or Failed with `properties.error = {code, message}` (exit code and log tail), or
   Canceled after `POST jobs/{name}/cancel`.

A sweep (`jobType: Sweep`) samples its `searchSpace` (Grid: every combination of the
`choice`s; Random and Bayesian: random draws with `samplingAlgorithm.seed`), runs up to
`limits.maxTotalTrials` trials `<sweep>_<n>` (at most `maxConcurrentTrials`, and 2, at once)
as command jobs whose MLflow runs carry `mlflow.parentRunId = <sweep>`, reads each trial's
`objective.primaryMetric` from its run, and sets `properties.properties.best_child_run_id`;
the best trial's outputs are copied to the sweep's outputs. `earlyTermination` is not applied.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

from fake_blob import BlobError, redact

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_.\-]+)\s*\}\}")
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL")
FOLDER_INPUTS = ("uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model")


class JobFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def duration_seconds(text: str | None) -> float | None:
    """Seconds of an ISO 8601 duration (`PT2H`, `P1DT30M`), or None."""
    if not text:
        return None
    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", text)
    if not m:
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


# --- search spaces ----------------------------------------------------------------------------

SAMPLERS = {
    # name: (number of arguments, draw(rng, args))
    "choice": (1, lambda rng, a: rng.choice(a[0])),
    "randint": (1, lambda rng, a: rng.randrange(int(a[0]))),
    "uniform": (2, lambda rng, a: rng.uniform(a[0], a[1])),
    "quniform": (3, lambda rng, a: round(rng.uniform(a[0], a[1]) / a[2]) * a[2]),
    # Azure ML's loguniform(min, max) is exp(uniform(min, max)): the bounds are exponents.
    "loguniform": (2, lambda rng, a: math.exp(rng.uniform(a[0], a[1]))),
    "qloguniform": (3, lambda rng, a: round(math.exp(rng.uniform(a[0], a[1])) / a[2]) * a[2]),
    "normal": (2, lambda rng, a: rng.gauss(a[0], a[1])),
    "qnormal": (3, lambda rng, a: round(rng.gauss(a[0], a[1]) / a[2]) * a[2]),
    "lognormal": (2, lambda rng, a: math.exp(rng.gauss(a[0], a[1]))),
    "qlognormal": (3, lambda rng, a: round(math.exp(rng.gauss(a[0], a[1])) / a[2]) * a[2]),
}


def search_space_errors(space, algorithm: str) -> list[tuple[str, str]]:
    """(target, message) for each expression the service would refuse."""
    out = []
    if not isinstance(space, dict) or not space:
        return [("properties.searchSpace", "searchSpace must map each hyperparameter to an expression such as [\"uniform\", [0, 1]]")]
    for name, expr in space.items():
        target = f"properties.searchSpace.{name}"
        ok = isinstance(expr, list) and len(expr) == 2 and isinstance(expr[0], str) and isinstance(expr[1], list)
        if not ok or expr[0].lower() not in SAMPLERS:
            out.append((target, f"{expr!r} is not a search space expression; use [\"<{'|'.join(SAMPLERS)}>\", [args]]"))
            continue
        kind, args = expr[0].lower(), expr[1]
        arity, _ = SAMPLERS[kind]
        if len(args) != arity:
            out.append((target, f"{kind} takes {arity} argument(s) in its list, got {len(args)}"))
        elif kind == "choice" and (not isinstance(args[0], list) or not args[0]):
            out.append((target, "choice takes a non-empty list of values: [\"choice\", [[a, b, c]]]"))
        elif kind != "choice" and not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in args):
            out.append((target, f"{kind} takes numbers, got {args!r}"))
        elif kind in ("uniform", "quniform", "loguniform", "qloguniform") and args[0] >= args[1]:
            out.append((target, f"{kind} needs min < max, got {args[0]} and {args[1]}"))
        if algorithm.lower() == "grid" and kind != "choice":
            out.append((target, f"Grid sampling takes only choice expressions, got {kind}"))
    return out


def sample(space: dict, algorithm: str, seed: int | None, max_trials: int) -> list[dict]:
    names = sorted(space)
    if algorithm.lower() == "grid":
        grid = [space[n][1][0] for n in names]
        combos = itertools.islice(itertools.product(*grid), max_trials)
        return [dict(zip(names, c)) for c in combos]
    rng = random.Random(seed)
    out = []
    for _ in range(max_trials):
        out.append({n: SAMPLERS[space[n][0].lower()][1](rng, space[n][1]) for n in names})
    return out


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


# --- running ----------------------------------------------------------------------------------


class Runner:
    """Runs the jobs of every workspace in worker threads. `ctx` is the server's state: it has
    `lock`, `account` (fake_blob.Account or None), `workdir`, `base_url`, `resolve(ws, ref)`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.procs: dict[tuple[str, str], subprocess.Popen] = {}
        self.cancelled: set[tuple[str, str]] = set()
        self.threads: list[threading.Thread] = []
        # Held from "is it cancelled?" to "its process is registered", and by cancel: a
        # cancel never falls between the two.
        self.plock = threading.Lock()

    # status changes go through the shared lock; the resource dict is the one the API serves
    def _set(self, job: dict, status: str, **extra) -> None:
        with self.ctx.lock:
            if job["properties"].get("status") in TERMINAL:
                return
            job["properties"]["status"] = status
            job["properties"].update(extra)

    def submit(self, ws, name: str, job: dict) -> None:
        target = self._sweep if job["properties"]["jobType"] == "Sweep" else self._command
        t = threading.Thread(target=self._guard, args=(target, ws, name, job), name=f"job-{name}", daemon=True)
        self.threads.append(t)
        t.start()

    def _guard(self, target, ws, name, job):
        try:
            target(ws, name, job)
        except Exception as e:  # the fake must never leave a job Running after a bug of its own
            self._set(job, "Failed", error={"code": "SystemError", "message": f"the fake failed: {e!r}"})
            ws.tracking.set_status(name, "FAILED")

    def cancel(self, ws, name: str) -> None:
        with self.plock:
            self.cancelled.add((ws.path, name))
            victims = []
            for (wpath, jname), proc in list(self.procs.items()):
                if wpath == ws.path and (jname == name or jname.startswith(name + "_")):
                    self.cancelled.add((wpath, jname))
                    victims.append(proc)
        for proc in victims:
            _kill(proc)

    def stop_all(self) -> None:
        with self.plock:
            victims = list(self.procs.items())
            self.cancelled.update(key for key, _ in victims)
        for _, proc in victims:
            _kill(proc)

    # --- command jobs -------------------------------------------------------------------------

    def _command(self, ws, name: str, job: dict) -> None:
        props = job["properties"]
        status, error = self.run(ws, name, props, props.get("inputs") or {}, props.get("outputs") or {}, {}, job)
        if status == "Completed":
            self._set(job, "Completed")
        elif status == "Canceled":
            self._set(job, "Canceled")
        else:
            self._set(job, "Failed", error=error)

    def run(self, ws, name, props, inputs, outputs, search_values, job, parent=None) -> tuple[str, dict | None]:
        """Run one command (a job, or a trial of the sweep `parent`) to its end: (status, error)."""
        ctx = self.ctx
        key = (ws.path, name)

        def cancelled() -> bool:
            return key in self.cancelled or (parent is not None and (ws.path, parent) in self.cancelled)
        root = Path(ctx.workdir) / ws.slug / name
        shutil.rmtree(root, ignore_errors=True)
        code, tmp, log_dir = root / "code", root / "tmp", root / "logs" / "user_logs"
        for d in (code, tmp, log_dir):
            d.mkdir(parents=True, exist_ok=True)
        log = log_dir / "std_log.txt"
        experiment = props.get("experimentName") or "Default"
        self._set(job, "Preparing")
        ws.tracking.set_status(name, "SCHEDULED")
        try:
            if ctx.account is None:
                raise JobFailed("UserError", "the fake runs no job without a blob emulator (--blob-url)")
            if props.get("codeId"):
                code_version = ctx.resolve(ws, props["codeId"])
                uri = (code_version or {}).get("properties", {}).get("codeUri")
                if not uri:
                    raise JobFailed("UserError", f"code {props['codeId']} has no codeUri")
                if ctx.account.download_tree(uri, code) == 0:
                    raise JobFailed("UserError", f"code {props['codeId']}: no files under {redact(uri)}")
            values: dict[tuple[str, str], str] = {}
            for iname, spec in inputs.items():
                values[("inputs", iname)] = self._input(ws, iname, spec, root / "inputs" / iname)
            out_dirs: dict[str, tuple[Path, str]] = {}
            for oname, spec in outputs.items():
                if oname == "default":
                    continue  # the run's artifact folder, which the service adds (the log goes there)
                d = root / "outputs" / oname
                d.mkdir(parents=True, exist_ok=True)
                values[("outputs", oname)] = str(d)
                out_dirs[oname] = (d, spec.get("uri") or ctx.default_output(ws, name, oname))
            for hp, v in search_values.items():
                values[("search_space", hp)] = _text(v)
        except (JobFailed, BlobError) as e:
            code_ = e.code if isinstance(e, JobFailed) else "UserError"
            log.write_text(f"preparing the job failed: {e}\n")
            self._upload_logs(ws, name, log, outputs, {})
            ws.tracking.set_status(name, "FAILED")
            return "Failed", {"code": code_, "message": str(e)}

        command = PLACEHOLDER.sub(lambda m: values.get((m.group(1), m.group(2)), m.group(0)), props["command"])
        env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
        env.update(props.get("environmentVariables") or {})
        env.update(
            {
                "TMPDIR": str(tmp),
                "MLFLOW_TRACKING_URI": ctx.tracking_uri(ws),
                "MLFLOW_TRACKING_TOKEN": ctx.job_token,
                "MLFLOW_RUN_ID": name,
                "MLFLOW_EXPERIMENT_ID": ws.tracking.experiment(experiment),
                "MLFLOW_EXPERIMENT_NAME": experiment,
                "AZUREML_RUN_ID": name,
            }
        )
        timeout = duration_seconds((props.get("limits") or {}).get("timeout"))
        self._set(job, "Running")
        ws.tracking.set_status(name, "RUNNING")
        started = time.monotonic()
        with open(log, "wb") as out:
            with self.plock:
                proc = None
                if not cancelled():
                    proc = subprocess.Popen(
                        ["bash", "-c", command],
                        cwd=code,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    self.procs[key] = proc
            if proc is None:
                rc = -signal.SIGTERM
            else:
                try:
                    rc = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    rc = None
                finally:
                    self.procs.pop(key, None)
        elapsed = time.monotonic() - started

        if cancelled():
            self._set(job, "CancelRequested")
            self._upload_logs(ws, name, log, outputs, out_dirs)
            ws.tracking.set_status(name, "KILLED")
            return "Canceled", None
        self._set(job, "Finalizing")
        error = None
        if rc is None:
            error = {"code": "JobTimeout", "message": f"the job ran longer than its limits.timeout ({props['limits']['timeout']}) and was stopped"}
        elif rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            error = {
                "code": "UserError",
                "message": f"Execution failed. User process 'bash' exited with status code {rc} after {elapsed:.1f}s. Last lines of user_logs/std_log.txt:\n{tail}",
            }
        try:
            for oname, (d, uri) in out_dirs.items():
                ctx.account.upload_tree(d, uri)
        except BlobError as e:
            error = error or {"code": "UserError", "message": f"uploading the outputs failed: {e}"}
        self._upload_logs(ws, name, log, outputs, out_dirs)
        ws.tracking.set_status(name, "FAILED" if error else "FINISHED")
        return ("Failed", error) if error else ("Completed", None)

    def _upload_logs(self, ws, name, log: Path, outputs: dict, out_dirs: dict) -> None:
        if self.ctx.account is None:
            return
        data = log.read_bytes() if log.exists() else b""
        targets = [self.ctx.run_artifacts(ws, name)]
        if "logs" in outputs:
            targets.append((outputs["logs"].get("uri") or self.ctx.default_output(ws, name, "logs")))
        for base in targets:
            try:
                self.ctx.account.put(redact(base).rstrip("/") + "/user_logs/std_log.txt" + _sas(base), data, "text/plain")
            except BlobError:
                pass

    def _input(self, ws, iname: str, spec: dict, dest: Path) -> str:
        kind = spec.get("jobInputType", "")
        if kind == "literal":
            return str(spec.get("value", ""))
        uri = spec.get("uri", "")
        uri = self._data_uri(ws, uri) or uri
        if not uri.startswith(("http://", "https://")):
            raise JobFailed("UserError", f"input {iname}: the fake reads only http(s) blob URLs and data assets, got {uri!r}")
        dest.mkdir(parents=True, exist_ok=True)
        if kind == "uri_file":
            data = self.ctx.account.get(uri)
            if data is None:
                raise JobFailed("UserError", f"input {iname}: no blob at {redact(uri)}")
            path = dest / (urllib.parse.unquote(redact(uri).rstrip("/").rsplit("/", 1)[-1]) or "data")
            path.write_bytes(data)
            return str(path)
        if kind in FOLDER_INPUTS:
            if self.ctx.account.download_tree(uri, dest) == 0:
                raise JobFailed("UserError", f"input {iname}: no blobs under {redact(uri)}")
            return str(dest)
        raise JobFailed("UserError", f"input {iname}: the fake does not run inputs of type {kind!r}")

    def _data_uri(self, ws, uri: str) -> str | None:
        """The dataUri of a data asset reference (`azureml:name:version` or its ARM id)."""
        if uri.startswith("azureml:") and not uri.startswith("azureml://"):
            parts = uri.split(":")
            if len(parts) == 3:
                uri = f"data/{parts[1]}/versions/{parts[2]}"
        elif "/data/" not in uri or not uri.startswith("/subscriptions/"):
            return None
        asset = self.ctx.resolve(ws, uri)
        if asset is None:
            raise JobFailed("UserError", f"data asset {uri} does not exist")
        return asset["properties"].get("dataUri")

    # --- sweeps -------------------------------------------------------------------------------

    def _sweep(self, ws, name: str, job: dict) -> None:
        props = job["properties"]
        space = props.get("searchSpace") or {}
        algo = props["samplingAlgorithm"]
        limits = props.get("limits") or {}
        grid_size = math.prod(len(e[1][0]) for e in space.values()) if algo["samplingAlgorithmType"].lower() == "grid" else None
        total = limits.get("maxTotalTrials") or grid_size or 20
        parallel = max(1, min(limits.get("maxConcurrentTrials") or 1, 2))
        trials = sample(space, algo["samplingAlgorithmType"], algo.get("seed"), total)
        objective = props["objective"]
        metric, goal = objective["primaryMetric"], objective["goal"].lower()
        self._set(job, "Running")
        ws.tracking.set_status(name, "RUNNING")
        trial_spec = props["trial"]
        results: dict[str, tuple[str, float | None]] = {}

        def one(i: int, hp: dict) -> None:
            trial = f"{name}_{i}"
            if (ws.path, name) in self.cancelled:
                return
            child_props = {
                "jobType": "Command",
                "command": trial_spec["command"],
                "codeId": trial_spec.get("codeId"),
                "environmentId": trial_spec["environmentId"],
                "environmentVariables": trial_spec.get("environmentVariables") or {},
                "resources": trial_spec.get("resources"),
                "experimentName": props.get("experimentName") or "Default",
                "displayName": trial,
                "computeId": props.get("computeId"),
                "inputs": props.get("inputs") or {},
                "outputs": {
                    k: {**v, "uri": self.ctx.default_output(ws, trial, k)}
                    for k, v in (props.get("outputs") or {}).items()
                    if k != "default"
                },
                "limits": {"jobLimitsType": "Command", "timeout": limits.get("trialTimeout")} if limits.get("trialTimeout") else None,
                "properties": {"azureml.parentRunId": name, "hyperparameters": _json(hp)},
                "tags": {},
                "status": "Queued",
            }
            child = self.ctx.add_child_job(ws, trial, {k: v for k, v in child_props.items() if v is not None})
            ws.tracking.start_run(trial, child_props["experimentName"], trial, {"mlflow.parentRunId": name})
            for k, v in hp.items():
                ws.tracking.runs[trial]["params"][k] = _text(v)
            status, error = self.run(ws, trial, child["properties"], child["properties"]["inputs"], child["properties"]["outputs"], hp, child, parent=name)
            self._set(child, status, **({"error": error} if error else {}))
            results[trial] = (status, ws.tracking.latest(trial, metric))

        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(lambda a: one(*a), enumerate(trials)))

        if (ws.path, name) in self.cancelled:
            ws.tracking.set_status(name, "KILLED")
            self._set(job, "Canceled")
            return
        scored = [(t, v) for t, (s, v) in results.items() if s == "Completed" and v is not None and not math.isnan(v)]
        if not scored:
            failed = sorted(t for t, (s, _) in results.items() if s != "Completed")
            why = f"{len(failed)} of {len(results)} trials failed ({', '.join(failed[:5])})" if failed else f"no trial logged the primary metric {metric!r}"
            ws.tracking.set_status(name, "FAILED")
            self._set(job, "Failed", error={"code": "UserError", "message": f"sweep {name}: {why}"})
            return
        best, value = (max if goal == "maximize" else min)(scored, key=lambda tv: tv[1])
        try:
            for oname, spec in (props.get("outputs") or {}).items():
                if oname != "default" and spec.get("uri"):
                    self._copy(self.ctx.default_output(ws, best, oname), spec["uri"])
        except BlobError as e:
            self._set(job, "Failed", error={"code": "UserError", "message": f"copying the best trial's outputs failed: {e}"})
            return
        with self.ctx.lock:
            props.setdefault("properties", {})["best_child_run_id"] = best
            props["properties"]["score"] = _text(value)
        ws.tracking.runs[name]["tags"]["best_child_run_id"] = best
        ws.tracking.set_status(name, "FINISHED")
        self._set(job, "Completed")

    def _copy(self, src: str, dst: str) -> None:
        acct = self.ctx.account
        base = redact(src).rstrip("/")
        for blob in acct.list(base + "/"):
            rel = blob[len(base) + 1 :]
            acct.put(redact(dst).rstrip("/") + "/" + rel + _sas(dst), acct.get(blob) or b"")


def _sas(url: str) -> str:
    q = urllib.parse.urlsplit(url).query
    return f"?{q}" if "sig=" in q else ""


def _json(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
