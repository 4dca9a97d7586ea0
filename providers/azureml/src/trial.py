"""One trial of a tuned script on Azure ML: mlctl puts this file at `.mlctl/trial.py` of the
script's code, beside `.mlctl/trial.json`, and a sweep's trial command runs

    python3 .mlctl/trial.py --hp NAME=${{search_space.NAME}} ...

Azure ML substitutes each sampled value. This then:

1. merges the values into the TrainingJob's hyperparameters (a value is JSON when it parses,
   else text; an integer parameter's `3.0` is `3`) and exports them as the script-mode
   contract has them: `SM_HPS` (JSON) and `SM_HP_<NAME>`;
2. runs the TrainingJob's command with a shell, passing its output through (the job's log);
3. reads the trial's metrics as mlctl reads every script's: each `metrics` regex over the
   output, line by line, the last match winning; then `metrics.json` in SM_MODEL_DIR,
   SM_OUTPUT_DIR and SM_OUTPUT_DATA_DIR (nested objects flattened with `.`), which win;
4. logs the metrics and the hyperparameters to the trial's MLflow run, which is what the
   sweep compares: MLflow's REST `runs/log-batch` with the job's MLFLOW_TRACKING_TOKEN, or,
   without a token, the `mlflow` package (with azureml-mlflow, as Azure ML's curated
   environments have it).

A trial whose script fails fails with the script's exit code. A trial that reports no value of
the sweep's objective, or cannot log it, fails and says so: the sweep could not compare it.
Standard library only; Python 3.8 or later.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request


def say(message):
    sys.stdout.write("mlctl trial: %s\n" % message)
    sys.stdout.flush()


def decode(text, integer):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if integer and isinstance(value, float) and not isinstance(value, bool):
        if value != int(value):
            raise ValueError("must be a whole number, got %s" % text)
        return int(value)
    return value


def hp_text(value):
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def flatten(prefix, value, into):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        into[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten("%s.%s" % (prefix, k) if prefix else str(k), v, into)


def metrics_json(path, into):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return
    except ValueError as e:
        raise SystemExit("mlctl trial: %s is not JSON: %s" % (path, e))
    flatten("", data, into)


def tracking_base(uri):
    uri = uri.rstrip("/")
    if uri.startswith("azureml://"):
        return "https://" + uri[len("azureml://"):]
    return uri


def log_rest(base, token, run_id, metrics, params):
    now = int(time.time() * 1000)
    body = {
        "run_id": run_id,
        "metrics": [
            {"key": k, "value": v, "timestamp": now, "step": 0}
            for k, v in sorted(metrics.items())
            if v == v and v not in (float("inf"), float("-inf"))
        ],
        "params": [{"key": k, "value": hp_text(v)} for k, v in sorted(params.items())],
    }
    data = json.dumps(body).encode()
    url = base + "/api/2.0/mlflow/runs/log-batch"
    last = ""
    for attempt in range(6):
        req = urllib.request.Request(url, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
            return
        except urllib.error.HTTPError as e:
            last = "HTTP %d: %s" % (e.code, e.read()[:300].decode("utf-8", "replace"))
            if e.code != 429 and e.code < 500:
                break
        except OSError as e:
            last = str(e)
        time.sleep(min(2 ** attempt, 20))
    raise SystemExit("mlctl trial: cannot log the metrics to MLflow (%s): %s" % (base, last))


def log_package(metrics, params):
    import mlflow  # noqa: PLC0415 (only where the job's environment has it)

    with mlflow.start_run():
        mlflow.log_params({k: hp_text(v) for k, v in params.items()})
        mlflow.log_metrics(metrics)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "trial.json"), encoding="utf-8") as f:
        conf = json.load(f)
    integers = set(conf.get("integers", []))
    hps = dict(conf.get("hyperparameters", {}))
    sampled = {}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag != "--hp" or not args:
            raise SystemExit("mlctl trial: usage: trial.py [--hp NAME=VALUE]...")
        name, sep, text = args.pop(0).partition("=")
        if not sep:
            raise SystemExit("mlctl trial: --hp takes NAME=VALUE, got %r" % name)
        try:
            sampled[name] = decode(text, name in integers)
        except ValueError as e:
            raise SystemExit("mlctl trial: hyperparameter `%s` %s" % (name, e))
    hps.update(sampled)
    env = dict(os.environ)
    env["SM_HPS"] = json.dumps(hps, sort_keys=True, separators=(",", ":"))
    for k, v in hps.items():
        env["SM_HP_" + k.upper().replace("-", "_")] = hp_text(v)
    say("hyperparameters %s" % env["SM_HPS"])

    regexes = [(m["name"], re.compile(m["regex"])) for m in conf.get("metrics", [])]
    metrics = {}
    proc = subprocess.Popen(
        conf["command"], shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    for raw in proc.stdout:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        line = raw.decode("utf-8", "replace")
        for name, rx in regexes:
            m = rx.search(line)
            if m and m.groups():
                try:
                    metrics[name] = float(m.group(1).strip())
                except ValueError:
                    pass
    code = proc.wait()
    if code != 0:
        say("the script `%s` exited with %d" % (conf["command"], code))
        return code if code > 0 else 1
    for var in ("SM_MODEL_DIR", "SM_OUTPUT_DIR", "SM_OUTPUT_DATA_DIR"):
        if env.get(var):
            metrics_json(os.path.join(env[var], "metrics.json"), metrics)
    objective = conf["objective"]
    if objective not in metrics:
        reported = sorted(metrics)
        names = ", ".join(reported[:10]) or "none"
        if len(reported) > 10:
            names += " and %d more" % (len(reported) - 10)
        say(
            "the script reported no `%s`, the sweep's objective (it reported: %s); print it "
            "where a `metrics` regex finds it, or write it to metrics.json in SM_MODEL_DIR"
            % (objective, names)
        )
        return 1
    say("metrics %s" % json.dumps(metrics, sort_keys=True))
    run_id = os.environ.get("MLFLOW_RUN_ID", "")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN", "")
    if not run_id or not uri:
        say("MLFLOW_RUN_ID or MLFLOW_TRACKING_URI is not set: this is not an Azure ML trial")
        return 1
    if token:
        log_rest(tracking_base(uri), token, run_id, metrics, hps)
    else:
        try:
            log_package(metrics, hps)
        except ImportError:
            say(
                "the job has no MLFLOW_TRACKING_TOKEN and its environment no `mlflow` package, "
                "so the trial's metrics cannot reach the sweep; use an environment with mlflow "
                "and azureml-mlflow (Azure ML's curated environments have them)"
            )
            return 1
    say("logged to MLflow run %s" % run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
