"""A fake Azure Machine Learning REST API (ARM), for mlctl's azureml provider tests.

    python fake_arm.py --port 0 [--blob-url http://127.0.0.1:10000/devstoreaccount1]
                       [--blob-key KEY] [--violations FILE] [--token TOKEN] ...

Binds 127.0.0.1 only, prints `fake-arm listening on http://127.0.0.1:<port>` once it accepts
connections (with `--port 0` the port is a free one), and stops cleanly on SIGTERM/SIGINT.
Every PUT/POST body is checked against Microsoft's generated models (contract.py); a
violation is answered 400 with an ARM error body and appended to `--violations` as a JSON line.
See README.md for what is implemented and how it differs from Azure.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import http.server
import itertools
import json
import math
import re
import secrets
import signal
import socketserver
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import contract
import fake_jobs
from fake_blob import Account, BlobError, EMULATOR_KEY
from fake_mlflow import MlflowError, Tracking

API_VERSION = "2025-12-01"
# Curated environments of the public `azureml` registry that jobs may name as
# `azureml://registries/azureml/environments/<name>/labels/latest` (what mlctl's script mode
# uses when the spec names no environment). The fake runs the job's command here either way.
CURATED_ENVIRONMENTS = {"sklearn-1.5"}
NS = "Microsoft.MachineLearningServices"
CODE_CONTAINER = "fake-code"
ARTIFACTS_CONTAINER = "fake-artifacts"

WS_RE = re.compile(
    rf"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{NS}/workspaces/([^/]+)(/.*)?$", re.I
)
MLFLOW_RE = re.compile(
    rf"^/mlflow/v1\.0/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{NS}/workspaces/([^/]+)/api/2\.0/mlflow/(.+)$",
    re.I,
)
OP_RE = re.compile(rf"^/subscriptions/([^/]+)/providers/{NS}/locations/([^/]+)/(mfeOperationsStatus|mfeOperationResults)/([^/]+)$", re.I)

# --- Azure Monitor's metrics of online endpoints and deployments ---------------------------------
# `GET <resource id>/providers/Microsoft.Insights/metrics`: Azure Monitor's own api-version, not
# Azure ML's. The metrics and dimensions are those of Microsoft's "Supported metrics" pages for
# the two resource types; `valid` lists every metric Azure knows of the type (what its error
# message names), `metrics` the ones the fake computes from the traffic of `/fake/traffic`.
METRICS_API_VERSION = "2024-02-01"
METRICS_PATH_RE = re.compile(r"^(.*)/providers/Microsoft\.Insights/metrics/?$", re.I)
# Time grains Azure Monitor takes (another is refused unless AutoAdjustTimegrain), in seconds.
TIME_GRAINS = {"PT1M": 60, "PT5M": 300, "PT15M": 900, "PT30M": 1800, "PT1H": 3600, "PT6H": 21600, "PT12H": 43200, "P1D": 86400}
AGGREGATIONS = ("average", "count", "minimum", "maximum", "total")
MAX_DATA_POINTS = 50_000  # a limit of the fake's own: a year of minutes would hang it


def _latency_metrics(dimensions: tuple[str, ...]) -> dict:
    return {
        f"RequestLatency_P{p}": {
            "percentile": p,
            "unit": "MilliSeconds",
            "dimensions": dimensions,
            "localized": f"Request Latency P{p}",
            "description": f"The average P{p} request latency aggregated by all request latency values collected over the selected time period",
        }
        for p in (50, 90, 95, 99)
    }


METRIC_TYPES = {
    "workspaces/onlineEndpoints/deployments": {
        "metrics": {
            "RequestsPerMinute": {
                "percentile": None,
                "unit": "Count",
                "dimensions": ("envoy_response_code",),
                "localized": "Requests Per Minute",
                "description": "The number of requests sent to online deployment within a minute",
            },
            **_latency_metrics(()),
        },
        "valid": (
            "CpuMemoryUtilizationPercentage", "CpuUtilizationPercentage", "DataCollectionErrorsPerMinute",
            "DataCollectionEventsPerMinute", "DeploymentCapacity", "DiskUtilization", "GpuEnergyJoules",
            "GpuMemoryUtilizationPercentage", "GpuUtilizationPercentage", "RequestLatency_P50", "RequestLatency_P90",
            "RequestLatency_P95", "RequestLatency_P99", "RequestsPerMinute",
        ),
    },
    "workspaces/onlineEndpoints": {
        "metrics": {
            "RequestsPerMinute": {
                "percentile": None,
                "unit": "Count",
                "dimensions": ("deployment", "statusCode", "statusCodeClass", "modelStatusCode"),
                "localized": "Requests Per Minute",
                "description": "The number of requests sent to online endpoint within a minute",
            },
            **_latency_metrics(("deployment",)),
        },
        "valid": (
            "ConnectionsActive", "DataCollectionErrorsPerMinute", "DataCollectionEventsPerMinute", "NetworkBytes",
            "NewConnectionsPerSecond", "RequestLatency", "RequestLatency_P50", "RequestLatency_P90", "RequestLatency_P95",
            "RequestLatency_P99", "RequestsPerMinute",
        ),
    },
}
# A dimension's value for a request (the deployment that served it, the status it answered).
DIMENSION_VALUES = {
    "envoy_response_code": lambda deployment, status: str(status),
    "deployment": lambda deployment, status: deployment,
    "statusCode": lambda deployment, status: str(status),
    "statusCodeClass": lambda deployment, status: f"{status // 100}xx",
    "modelStatusCode": lambda deployment, status: str(status),
}
FILTER_CLAUSE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s+eq\s+'((?:[^']|'')*)'\s*", re.I)
FILTER_JOIN = re.compile(r"(and|or)\s+", re.I)

# Resource kinds under a workspace: url segment -> (ARM type suffix, has versions)
ASSETS = {"data": "data", "codes": "codes", "environments": "environments", "models": "models"}
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-]{1,30}[A-Za-z0-9]$")
# What a later PUT of an existing asset version may not change (versions are immutable).
IMMUTABLE = {"data": ("dataUri", "dataType"), "codes": ("codeUri",), "environments": ("image", "build", "condaFile"), "models": ("modelUri", "modelType")}
# What a later PUT of an existing job may change.
JOB_MUTABLE = ("tags", "description", "displayName", "properties", "isArchived")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 / RFC 3339 time (`2026-12-02T05:00:00Z`, fractional seconds allowed), as UTC;
    one without an offset is taken as UTC. ValueError when it is none."""
    t = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc)


def utc_stamp(unix: int) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def nearest_rank(samples, p: int) -> float:
    """The p-th percentile (nearest rank) of `samples`, pairs (value, how many times)."""
    n = sum(c for _, c in samples)
    rank = max(1, -(-p * n // 100))  # ceil(p * n / 100), in integers
    seen = 0
    for value, c in sorted(samples):
        seen += c
        if seen >= rank:
            return value
    return sorted(samples)[-1][0]


class ArmError(Exception):
    """An ARM error reply: `{"error": {"code", "message", "target"?, "details"?}}`."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None, details=None, headers=None, unimplemented=False):
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target
        # A request the fake has no route for: recorded as a violation too (a wrong URL).
        self.unimplemented = unimplemented
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        if self.details:
            err["details"] = self.details
        return {"error": err}


def bad(message: str, target: str | None = None, code: str = "BadArgument", details=None) -> ArmError:
    return ArmError(400, code, message, target, details)


class Workspace:
    _instances = itertools.count(1)

    def __init__(self, sub: str, rg: str, name: str, location: str):
        self.sub, self.rg, self.name, self.location = sub, rg, name, location
        self.path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{NS}/workspaces/{name}"
        # Unique per instance: after /fake/reset, jobs of the same name get fresh folders and blobs.
        self.slug = f"{hashlib.sha1(self.path.lower().encode()).hexdigest()[:8]}-{next(Workspace._instances)}"
        self.resources: dict[str, dict] = {}  # "jobs/x", "models/m/versions/1", ...
        self.order: dict[str, int] = {}
        self.tracking = Tracking()
        self.keys: dict[str, dict] = {}


class Operation:
    """A long-running operation, done after `polls` status reads or `seconds` seconds."""

    def __init__(self, ws: Workspace, kind: str, key: str, polls: int, seconds: float, on_done, fail: dict | None):
        self.id = str(uuid.uuid4())
        self.ws, self.kind, self.key = ws, kind, key
        self.polls_left, self.deadline = polls, time.monotonic() + seconds
        self.on_done, self.fail = on_done, fail
        self.status = "InProgress"
        self.start = now()
        self.end = None

    def advance(self, polled: bool) -> None:
        if self.status != "InProgress":
            return
        if polled:
            self.polls_left -= 1
        if self.polls_left < 0 or time.monotonic() >= self.deadline:
            self.status = "Failed" if self.fail else "Succeeded"
            self.end = now()
            self.on_done(self)


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.base_url = ""  # set once bound
        self.account = Account(args.blob_url, args.blob_key) if args.blob_url else None
        self.workdir = args.work_dir or tempfile.mkdtemp(prefix="fake-arm-")
        self.job_token = secrets.token_urlsafe(16)
        self.runner = fake_jobs.Runner(self)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # A fresh runner: the old one's jobs are stopped and keep their own cancel records,
            # so a new job may reuse a name.
            self.runner.stop_all()
            self.runner = fake_jobs.Runner(self)
            self.workspaces: dict[str, Workspace] = {}
            self.operations: dict[str, Operation] = {}
            self.faults: list[dict] = []
            self.requests: list[dict] = []
            self.violations: list[dict] = []
            # What reached each deployment (`/fake/traffic`), by (workspace path lower-cased,
            # deployment key): entries (minute as unix seconds, status, latency ms, requests).
            self.traffic: dict[tuple[str, str], list[tuple[int, int, float, int]]] = {}
            self.seq = 0

    def workspace(self, sub: str, rg: str, name: str) -> Workspace:
        key = f"{sub}/{rg}/{name}".lower()
        allowed = self.args.workspace
        if allowed and key not in {w.lower() for w in allowed}:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{NS}/workspaces/{name}' under resource group '{rg}' was not found.",
            )
        with self.lock:
            ws = self.workspaces.get(key)
            if ws is None:
                ws = self.workspaces[key] = Workspace(sub, rg, name, self.args.location)
            return ws

    # --- what the job runner asks of the server ---------------------------------------------

    def resolve(self, ws: Workspace, ref: str) -> dict | None:
        """The resource an ARM id (or a path under the workspace) names, or None. A curated
        environment of Azure's public `azureml` registry resolves to itself."""
        m = re.match(r"^azureml://registries/azureml/environments/([^/]+)/(labels|versions)/([^/]+)$", ref)
        if m:
            if m.group(1) not in CURATED_ENVIRONMENTS:
                return None
            return {"id": ref, "name": m.group(1), "properties": {"image": f"mcr.microsoft.com/azureml/curated/{m.group(1)}:{m.group(3)}"}}
        rel = ref
        if ref.lower().startswith(ws.path.lower() + "/"):
            rel = ref[len(ws.path) + 1 :]
        elif ref.startswith("/subscriptions/"):
            return None
        with self.lock:
            return ws.resources.get(rel.strip("/"))

    def default_output(self, ws: Workspace, job: str, output: str) -> str:
        return f"{self.account.url}/{ARTIFACTS_CONTAINER}/{ws.slug}/azureml/{job}/{output}/"

    def run_artifacts(self, ws: Workspace, job: str) -> str:
        return f"{self.account.url}/{ARTIFACTS_CONTAINER}/{ws.slug}/ExperimentRun/dcid.{job}/"

    def tracking_uri(self, ws: Workspace) -> str:
        return f"{self.base_url}/mlflow/v1.0{ws.path}"

    def add_child_job(self, ws: Workspace, name: str, props: dict) -> dict:
        with self.lock:
            job = envelope(ws, f"jobs/{name}", {"properties": props}, "jobs")
            job["properties"]["outputs"] = self._with_default_output(ws, name, props.get("outputs") or {})
            ws.resources[f"jobs/{name}"] = job
            ws.order[f"jobs/{name}"] = self._next()
            return job

    def _with_default_output(self, ws: Workspace, name: str, outputs: dict) -> dict:
        out = copy.deepcopy(outputs)
        if self.account is not None:
            for oname, spec in out.items():
                spec.setdefault("uri", self.default_output(ws, name, oname))
            out["default"] = {"jobOutputType": "uri_folder", "uri": self.run_artifacts(ws, name), "mode": "ReadWriteMount"}
        return out

    def _next(self) -> int:
        self.seq += 1
        return self.seq


def envelope(ws: Workspace, rel: str, body: dict, kind: str) -> dict:
    """A resource as the service returns it: the client's body plus what the service sets."""
    parts = rel.split("/")
    type_segments = [parts[i] for i in range(0, len(parts), 2)]
    out = copy.deepcopy(body)
    out["id"] = f"{ws.path}/{rel}"
    out["name"] = parts[-1]
    out["type"] = f"{NS}/workspaces/" + "/".join(type_segments)
    stamp = now()
    out["systemData"] = {
        "createdAt": stamp,
        "createdBy": "fake-arm",
        "createdByType": "User",
        "lastModifiedAt": stamp,
        "lastModifiedBy": "fake-arm",
        "lastModifiedByType": "User",
    }
    out.setdefault("properties", {})
    return out


# --- the ARM API ------------------------------------------------------------------------------


class Api:
    def __init__(self, state: State):
        self.s = state

    @property
    def args(self):
        return self.s.args

    def lro_headers(self, op: Operation, ws: Workspace, location: bool) -> dict:
        base = f"{self.s.base_url}/subscriptions/{ws.sub}/providers/{NS}/locations/{ws.location}"
        q = f"?api-version={API_VERSION}"
        headers = {"Retry-After": str(self.args.retry_after)}
        if location:
            headers["Location"] = f"{base}/mfeOperationResults/{op.id}{q}"
        else:
            headers["Azure-AsyncOperation"] = f"{base}/mfeOperationsStatus/{op.id}{q}"
        return headers

    def start_op(self, ws: Workspace, kind: str, key: str, on_done, fail=None) -> Operation:
        op = Operation(ws, kind, key, self.args.lro_polls, self.args.lro_seconds, on_done, fail)
        self.s.operations[op.id] = op
        return op

    def pending(self, ws: Workspace, key: str) -> Operation | None:
        for op in self.s.operations.values():
            op.advance(False)
            if op.ws is ws and op.key == key and op.status == "InProgress":
                return op
        return None

    def not_found(self, ws: Workspace, rel: str) -> ArmError:
        parts = rel.split("/")
        kind = "/".join(parts[i] for i in range(0, len(parts) - 1, 2))
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{NS}/workspaces/{ws.name}/{kind}/{parts[-1]}' under resource group '{ws.rg}' was not found.",
        )

    def get(self, ws: Workspace, rel: str) -> dict:
        for op in list(self.s.operations.values()):
            op.advance(False)
        res = ws.resources.get(rel)
        if res is None:
            raise self.not_found(ws, rel)
        return res

    def listing(self, ws: Workspace, prefix: str, depth: int, query: dict, path: str) -> dict:
        for op in list(self.s.operations.values()):
            op.advance(False)
        items = [
            (ws.order[k], v)
            for k, v in ws.resources.items()
            if k.startswith(prefix + "/") and k.count("/") == prefix.count("/") + depth
        ]
        items = [(o, v) for o, v in items if self.matches(v, query)]
        items.sort(key=lambda kv: -kv[0])  # newest first, as the service's default order
        if query.get("$top", "").isdigit():
            items = items[: int(query["$top"])]
        start = int(query.get("$skipToken", "0") or 0)
        size = self.args.page_size
        page = [v for _, v in items[start : start + size]]
        out: dict = {"value": page}
        if start + size < len(items):
            q = dict(query)
            q["$skipToken"] = str(start + size)
            out["nextLink"] = f"{self.s.base_url}{path}?{urllib.parse.urlencode(q)}"
        return out

    @staticmethod
    def matches(resource: dict, query: dict) -> bool:
        """The list filters of the asset and job APIs: `tag` (jobs: has this tag key), `tags` and
        `properties` (comma-separated `key` or `key=value`, all must hold), `listViewType`
        (ActiveOnly, the default, hides archived ones; ArchivedOnly; All)."""
        props = resource.get("properties") or {}

        def holds(have: dict, spec: str) -> bool:
            for item in filter(None, (x.strip() for x in spec.split(","))):
                key, eq, value = item.partition("=")
                if key not in have or (eq and str(have[key]) != value):
                    return False
            return True

        tags = props.get("tags") if "tags" in props else resource.get("tags") or {}
        if "tag" in query and query["tag"] not in (tags or {}):
            return False
        if "tags" in query and not holds(tags or {}, query["tags"]):
            return False
        if "properties" in query and not holds(props.get("properties") or {}, query["properties"]):
            return False
        view = query.get("listViewType", "ActiveOnly").lower()
        archived = bool(props.get("isArchived"))
        return view == "all" or (view == "archivedonly") == archived

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, method: str, ws: Workspace, rel: str, query: dict, body, path: str):
        """(status, body, headers) for a request under the workspace `ws` (rel without '/')."""
        p = rel.split("/") if rel else []
        if not p:
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{method} on a workspace is not implemented by the fake", unimplemented=True)
            return 200, self.workspace_view(ws), {}
        kind = p[0]
        if kind == "computes":
            return self.computes(method, ws, p)
        if kind in ASSETS:
            return self.asset(method, ws, p, query, body, path)
        if kind == "jobs":
            return self.jobs(method, ws, p, query, body, path)
        if kind == "onlineEndpoints":
            return self.endpoints(method, ws, p, query, body, path)
        raise ArmError(404, "NoRegisteredProviderFound", f"the fake implements no resource type {kind!r} under a workspace", unimplemented=True)

    def workspace_view(self, ws: Workspace) -> dict:
        host = urllib.parse.urlsplit(self.s.base_url).netloc
        return {
            "id": ws.path,
            "name": ws.name,
            "type": f"{NS}/workspaces",
            "location": ws.location,
            "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"},
            "tags": {},
            "properties": {
                "friendlyName": ws.name,
                "provisioningState": "Succeeded",
                "workspaceId": str(uuid.UUID(hashlib.md5(ws.path.lower().encode()).hexdigest())),
                "discoveryUrl": f"{self.s.base_url}/discovery",
                "mlFlowTrackingUri": f"azureml://{host}/mlflow/v1.0{ws.path}",
                "storageAccount": f"/subscriptions/{ws.sub}/resourceGroups/{ws.rg}/providers/Microsoft.Storage/storageAccounts/fake",
            },
        }

    def computes(self, method, ws, p):
        if method != "GET":
            raise ArmError(405, "MethodNotAllowed", "the fake's computes are fixed (--compute); only GET is implemented", unimplemented=True)
        if len(p) == 1:
            return 200, {"value": [self.compute_view(ws, c) for c in self.args.compute]}, {}
        if len(p) == 2 and p[1] in self.args.compute:
            return 200, self.compute_view(ws, p[1]), {}
        raise self.not_found(ws, "/".join(p))

    def compute_view(self, ws, name):
        return {
            "id": f"{ws.path}/computes/{name}",
            "name": name,
            "type": f"{NS}/workspaces/computes",
            "location": ws.location,
            "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded", "properties": {"vmSize": "STANDARD_DS3_V2"}},
        }

    # --- assets: data, codes, environments, models (containers and versions) -----------------

    def asset(self, method, ws, p, query, body, path):
        kind = p[0]
        if len(p) == 1 and method == "GET":
            return 200, self.listing(ws, kind, 1, query, path), {}
        if len(p) < 2:
            raise ArmError(405, "MethodNotAllowed", f"{method} {kind} is not implemented", unimplemented=True)
        name = p[1]
        container = f"{kind}/{name}"
        if len(p) == 2:
            if method == "GET":
                return 200, self.get(ws, container), {}
            if method == "PUT":
                self.check_name(name, ASSET_NAME, "name")
                return self.put_container(ws, kind, container, body)
            if method == "DELETE":
                if container not in ws.resources:
                    return 204, None, {}
                for key in [k for k in ws.resources if k == container or k.startswith(container + "/")]:
                    del ws.resources[key]
                return 200, None, {}
        if len(p) == 3 and p[2] == "versions" and method == "GET":
            return 200, self.listing(ws, f"{container}/versions", 1, query, path), {}
        if len(p) >= 4 and p[2] == "versions":
            key = f"{container}/versions/{p[3]}"
            if len(p) == 5 and kind == "codes" and p[4] == "startPendingUpload" and method == "POST":
                return self.pending_upload(ws, body)
            if len(p) == 4:
                if method == "GET":
                    return 200, self.get(ws, key), {}
                if method == "PUT":
                    self.check_name(name, ASSET_NAME, "name")
                    self.check_name(p[3], ASSET_NAME, "version")
                    return self.put_version(ws, kind, container, key, p[3], body)
                if method == "DELETE":
                    if key not in ws.resources:
                        return 204, None, {}
                    del ws.resources[key]
                    self.refresh_container(ws, container)
                    return 200, None, {}
        raise ArmError(405, "MethodNotAllowed", f"{method} {'/'.join(p)} is not implemented by the fake", unimplemented=True)

    def check_name(self, name: str, pattern: re.Pattern, what: str) -> None:
        if not pattern.match(name):
            raise bad(f"the {what} {name!r} is invalid: it must match {pattern.pattern}", target=what)

    def put_container(self, ws, kind, container, body):
        existing = ws.resources.get(container)
        res = envelope(ws, container, body, kind)
        if existing is not None:
            res["systemData"]["createdAt"] = existing["systemData"]["createdAt"]
        ws.resources[container] = res
        ws.order.setdefault(container, self.s._next())
        self.refresh_container(ws, container)
        return (200 if existing else 201), res, {}

    def refresh_container(self, ws, container):
        res = ws.resources.get(container)
        if res is None:
            return
        versions = [k.rsplit("/", 1)[1] for k in ws.resources if k.startswith(container + "/versions/")]
        numeric = [int(v) for v in versions if v.isdigit()]
        props = res["properties"]
        if versions:
            latest = max(versions, key=lambda v: ws.order.get(f"{container}/versions/{v}", 0))
            props["latestVersion"] = latest
        else:
            props.pop("latestVersion", None)
        props["nextVersion"] = str(max(numeric, default=0) + 1)

    def put_version(self, ws, kind, container, key, version, body):
        existing = ws.resources.get(key)
        if existing is not None:
            for field in IMMUTABLE[kind]:
                old, new = existing["properties"].get(field), body["properties"].get(field)
                if old != new:
                    raise ArmError(
                        409,
                        "Conflict",
                        f"{kind} version {container.split('/')[1]}:{version} already exists with another {field}; asset versions are immutable, create a new version",
                        target=f"properties.{field}",
                    )
        if kind == "data":
            self.check_blob_uri(body["properties"].get("dataUri"), "properties.dataUri")
        if container not in ws.resources:
            # A version PUT creates its container, as the service does.
            cbody = {"properties": {}}
            if kind == "data":
                cbody["properties"]["dataType"] = body["properties"].get("dataType", "uri_file")
            ws.resources[container] = envelope(ws, container, cbody, kind)
            ws.order[container] = self.s._next()
        res = envelope(ws, key, body, kind)
        if kind in ("codes", "models", "environments"):
            res["properties"].setdefault("provisioningState", "Succeeded")
        if existing is not None:
            res["systemData"]["createdAt"] = existing["systemData"]["createdAt"]
        ws.resources[key] = res
        ws.order.setdefault(key, self.s._next())
        self.refresh_container(ws, container)
        return (200 if existing else 201), res, {}

    def check_blob_uri(self, uri, target):
        if isinstance(uri, str) and not uri.startswith(("https://", "http://", "azureml://")):
            raise bad(f"{uri!r} is not a storage URL (https://<account>.blob.core.windows.net/<container>/<path>)", target=target)

    def pending_upload(self, ws, body):
        if self.s.account is None:
            raise ArmError(503, "ServiceUnavailable", "the fake has no blob emulator (--blob-url): it cannot hand out upload URLs")
        upload_id = body.get("pendingUploadId") or str(uuid.uuid4())
        blob_uri = f"{self.s.account.url}/{CODE_CONTAINER}/LocalUpload/{upload_id}"
        sas = self.s.account.container_sas(CODE_CONTAINER, "racwl")
        return (
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": f"/subscriptions/{ws.sub}/resourceGroups/{ws.rg}/providers/Microsoft.Storage/storageAccounts/{self.s.account.name}",
                    "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{sas}"},
                },
                "pendingUploadId": upload_id,
                "pendingUploadType": body.get("pendingUploadType", "TemporaryBlobReference"),
            },
            {},
        )

    # --- jobs ---------------------------------------------------------------------------------

    def jobs(self, method, ws, p, query, body, path):
        if len(p) == 1 and method == "GET":
            return 200, self.listing(ws, "jobs", 1, query, path), {}
        if len(p) < 2:
            raise ArmError(405, "MethodNotAllowed", f"{method} jobs is not implemented", unimplemented=True)
        name, key = p[1], f"jobs/{p[1]}"
        if len(p) == 2 and method == "GET":
            return 200, self.get(ws, key), {}
        if len(p) == 2 and method == "PUT":
            return self.put_job(ws, name, key, body)
        if len(p) == 2 and method == "DELETE":
            if key not in ws.resources:
                return 204, None, {}
            self.s.runner.cancel(ws, name)

            def gone(op):
                ws.resources.pop(key, None)

            op = self.start_op(ws, "delete", key, gone)
            return 202, None, self.lro_headers(op, ws, location=True)
        if len(p) == 3 and p[2] == "cancel" and method == "POST":
            job = self.get(ws, key)
            status = job["properties"].get("status")
            if status not in fake_jobs.TERMINAL:
                job["properties"]["status"] = "CancelRequested"
                self.s.runner.cancel(ws, name)

            def done(op):
                pass

            op = self.start_op(ws, "cancel", key, done)
            return 202, None, self.lro_headers(op, ws, location=True)
        raise ArmError(405, "MethodNotAllowed", f"{method} {'/'.join(p)} is not implemented by the fake", unimplemented=True)

    def put_job(self, ws, name, key, body):
        self.check_name(name, JOB_NAME, "name")
        props = body["properties"]
        existing = ws.resources.get(key)
        if existing is not None:
            old = {k: v for k, v in existing["properties"].items() if k not in JOB_MUTABLE}
            new = {k: v for k, v in props.items() if k not in JOB_MUTABLE}
            changed = sorted(k for k in set(new) | set(old) if k not in ("status", "services", "outputs", "error") and old.get(k) != new.get(k))
            if changed:
                raise bad(
                    f"job {name} already exists and jobs are immutable: {', '.join(changed)} cannot change (only {', '.join(JOB_MUTABLE)} can); submit a job with a new name",
                    target=f"properties.{changed[0]}",
                    code="UserError",
                )
            for k in JOB_MUTABLE:
                if k in props:
                    existing["properties"][k] = props[k]
            return 200, existing, {}
        self.validate_job(ws, props)
        job = envelope(ws, key, body, "jobs")
        jp = job["properties"]
        jp["status"] = "Queued"
        jp["outputs"] = self.s._with_default_output(ws, name, props.get("outputs") or {})
        host = urllib.parse.urlsplit(self.s.base_url).netloc
        jp["services"] = {
            "Studio": {"jobServiceType": "Studio", "endpoint": f"https://ml.azure.com/runs/{name}?wsid={ws.path}&fake={host}"},
            "Tracking": {"jobServiceType": "Tracking", "endpoint": f"azureml://{host}/mlflow/v1.0{ws.path}"},
        }
        ws.resources[key] = job
        ws.order[key] = self.s._next()
        ws.tracking.start_run(name, props.get("experimentName") or "Default", props.get("displayName") or name, dict(props.get("tags") or {}))
        self.s.runner.submit(ws, name, job)
        return 201, job, {}

    def validate_job(self, ws, props):
        jt = props["jobType"]
        if jt not in ("Command", "Sweep"):
            raise bad(f"the fake runs Command and Sweep jobs, not {jt}", target="properties.jobType", code="UserError")
        if "computeId" in props and props["computeId"]:
            cid = props["computeId"]
            name = cid.rstrip("/").rsplit("/", 1)[-1]
            if not cid.lower().startswith(ws.path.lower() + "/computes/") or name not in self.args.compute:
                raise bad(
                    f"compute {cid} does not exist in workspace {ws.name} (computes: {', '.join(self.args.compute)}); omit computeId for serverless compute",
                    target="properties.computeId",
                    code="UserError",
                )
        spec = props["trial"] if jt == "Sweep" else props
        prefix = "properties.trial." if jt == "Sweep" else "properties."
        for field, what in (("codeId", "code"), ("environmentId", "environment")):
            ref = spec.get(field)
            if ref and self.s.resolve(ws, ref) is None:
                raise bad(f"{what} {ref} does not exist (PUT it before the job)", target=prefix + field, code="UserError")
        inputs, outputs = props.get("inputs") or {}, props.get("outputs") or {}
        for iname, inp in inputs.items():
            if inp.get("jobInputType") != "literal":
                self.check_blob_uri(inp.get("uri"), f"properties.inputs.{iname}.uri")
        space = props.get("searchSpace") or {}
        if jt == "Sweep":
            algo = props["samplingAlgorithm"]["samplingAlgorithmType"]
            errors = fake_jobs.search_space_errors(space, algo)
            if errors:
                raise bad(
                    errors[0][1],
                    target=errors[0][0],
                    code="UserError",
                    details=[{"code": "InvalidSearchSpace", "message": m, "target": t} for t, m in errors],
                )
            limits = props.get("limits") or {}
            if algo.lower() != "grid" and not limits.get("maxTotalTrials"):
                raise bad("limits.maxTotalTrials is required for Random and Bayesian sampling", target="properties.limits.maxTotalTrials", code="UserError")
        for m in fake_jobs.PLACEHOLDER.finditer(spec["command"]):
            group, name = m.group(1), m.group(2)
            declared = {"inputs": inputs, "outputs": outputs, "search_space": space if jt == "Sweep" else {}}[group]
            if name not in declared:
                raise bad(
                    f"the command references ${{{{{group}.{name}}}}} but the job declares no such {group.rstrip('s').replace('_', ' ')}",
                    target=prefix + "command",
                    code="UserError",
                )

    # --- online endpoints and deployments -----------------------------------------------------

    def endpoints(self, method, ws, p, query, body, path):
        if len(p) == 1 and method == "GET":
            return 200, self.listing(ws, "onlineEndpoints", 1, query, path), {}
        if len(p) < 2:
            raise ArmError(405, "MethodNotAllowed", f"{method} onlineEndpoints is not implemented", unimplemented=True)
        name, key = p[1], f"onlineEndpoints/{p[1]}"
        if len(p) == 2:
            if method == "GET":
                return 200, self.get(ws, key), {}
            if method == "PUT":
                return self.put_endpoint(ws, name, key, body)
            if method == "DELETE":
                return self.delete_endpoint(ws, key)
            if method == "PATCH":
                return self.patch_tracked(ws, key, body)
        if len(p) == 3 and method == "POST" and p[2] in ("listKeys", "token", "regenerateKeys"):
            ep = self.get(ws, key)
            mode = ep["properties"].get("authMode", "").lower()
            if p[2] in ("listKeys", "regenerateKeys") and mode != "key":
                raise bad(f"endpoint {name} uses authMode {ep['properties'].get('authMode')}: it has no keys", target="authMode", code="UserError")
            if p[2] == "token" and mode != "amltoken":
                raise bad(f"endpoint {name} uses authMode {ep['properties'].get('authMode')}: it issues no token", target="authMode", code="UserError")
            if p[2] == "listKeys":
                return 200, ws.keys.setdefault(name, self.new_keys()), {}
            if p[2] == "token":
                exp = int(time.time()) + 3600
                return 200, {"accessToken": secrets.token_urlsafe(24), "expiryTimeUtc": exp, "refreshAfterTimeUtc": exp - 1800, "tokenType": "Bearer"}, {}
            which = "primaryKey" if body.get("keyType", "").lower() == "primary" else "secondaryKey"

            def regenerated(op):
                ws.keys.setdefault(name, self.new_keys())[which] = body.get("keyValue") or secrets.token_urlsafe(24)

            op = self.start_op(ws, "regenerateKeys", key + "/keys", regenerated)
            return 202, None, self.lro_headers(op, ws, location=True)
        if len(p) >= 3 and p[2] == "deployments":
            if len(p) == 3 and method == "GET":
                self.get(ws, key)
                return 200, self.listing(ws, f"{key}/deployments", 1, query, path), {}
            if len(p) == 4:
                dkey = f"{key}/deployments/{p[3]}"
                if method == "GET":
                    return 200, self.get(ws, dkey), {}
                if method == "PUT":
                    return self.put_deployment(ws, key, p[3], dkey, body)
                if method == "DELETE":
                    return self.delete_deployment(ws, key, p[3], dkey)
                if method == "PATCH":
                    return self.patch_tracked(ws, dkey, body)
        raise ArmError(405, "MethodNotAllowed", f"{method} {'/'.join(p)} is not implemented by the fake", unimplemented=True)

    def patch_tracked(self, ws, key, body):
        """PATCH of an endpoint or a deployment (a partial update: tags, sku, identity), a
        long-running operation as in Azure: 202 + Location, applied when it completes. `tags`
        replaces the resource's tags, as ARM's PATCH does."""
        res = self.get(ws, key)
        if self.pending(ws, key):
            raise ArmError(409, "Conflict", f"{key} has an operation in progress; retry when it is done")

        def patched(op):
            if "tags" in body:
                res["tags"] = dict(body.get("tags") or {})
            if "sku" in body:
                res.setdefault("sku", {}).update(body.get("sku") or {})
            if "identity" in body:
                res["identity"] = body.get("identity")

        op = self.start_op(ws, "patch", key, patched)
        return 202, None, self.lro_headers(op, ws, location=True)

    def new_keys(self) -> dict:
        return {"primaryKey": secrets.token_urlsafe(24), "secondaryKey": secrets.token_urlsafe(24)}

    def fault_for(self, method: str, path: str, field: str) -> dict | None:
        """A fault that fails the operation a request starts (rather than the request)."""
        for f in self.s.faults:
            if f.get(field) and f["times"] > 0 and re.search(f["match"], f"{method} {path}"):
                f["times"] -= 1
                return f
        return None

    def busy(self, ws, key, what):
        op = self.pending(ws, key)
        if op is not None:
            raise ArmError(
                409,
                "Conflict",
                f"{what} has an operation in progress ({op.kind}, started {op.start}); wait for it to finish",
                target="name",
            )

    def put_endpoint(self, ws, name, key, body):
        self.check_name(name, ENDPOINT_NAME, "name")
        self.busy(ws, key, f"endpoint {name}")
        props = body["properties"]
        if body["location"].lower().replace(" ", "") != ws.location.lower():
            raise bad(f"location {body['location']!r} differs from the workspace's location {ws.location!r}", target="location")
        existing = ws.resources.get(key)
        deployments = {
            k.rsplit("/", 1)[1]: v for k, v in ws.resources.items() if k.startswith(key + "/deployments/")
        }
        self.check_traffic(name, props.get("traffic") or {}, props.get("mirrorTraffic") or {}, deployments)
        if existing is not None and existing["properties"].get("authMode", "").lower() != props["authMode"].lower():
            raise bad(f"authMode of endpoint {name} cannot change after creation", target="properties.authMode")
        res = envelope(ws, key, body, "onlineEndpoints")
        rp = res["properties"]
        rp["provisioningState"] = "Updating" if existing else "Creating"
        rp["scoringUri"] = f"{self.s.base_url}/score/{name}/score"
        rp["swaggerUri"] = f"{self.s.base_url}/score/{name}/swagger.json"
        if existing is not None:
            res["systemData"]["createdAt"] = existing["systemData"]["createdAt"]
            res.setdefault("identity", existing.get("identity"))
        if res.get("identity", {}).get("type", "").lower().startswith("systemassigned"):
            res["identity"]["principalId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, res["id"]))
            res["identity"]["tenantId"] = "00000000-0000-0000-0000-000000000000"
        ws.resources[key] = res
        ws.order.setdefault(key, self.s._next())
        fail = self.fault_for("PUT", f"{ws.path}/{key}", "operation")
        op = self.start_op(ws, "create" if not existing else "update", key, lambda op: self.provisioned(ws, key, op), fail)
        return 201, res, self.lro_headers(op, ws, location=False)

    def provisioned(self, ws, key, op):
        res = ws.resources.get(key)
        if res is None:
            return
        res["properties"]["provisioningState"] = "Failed" if op.fail else "Succeeded"

    def check_traffic(self, name, traffic, mirror, deployments):
        target = "properties.traffic"
        for dep, pct in traffic.items():
            if dep not in deployments:
                raise bad(f"traffic of endpoint {name} routes {pct}% to deployment {dep!r}, which does not exist (deployments: {', '.join(sorted(deployments)) or 'none'})", target=f"{target}.{dep}")
            if not 0 <= pct <= 100:
                raise bad(f"traffic to deployment {dep!r} must be 0..100, got {pct}", target=f"{target}.{dep}")
            if pct > 0 and deployments[dep]["properties"].get("provisioningState") != "Succeeded":
                raise bad(f"traffic can only be routed to a deployment in state Succeeded; {dep!r} is {deployments[dep]['properties'].get('provisioningState')}", target=f"{target}.{dep}")
        total = sum(traffic.values())
        if traffic and total not in (0, 100):
            details = [{"code": "InvalidTraffic", "message": f"{d}: {v}%", "target": f"{target}.{d}"} for d, v in sorted(traffic.items())]
            raise bad(f"the traffic of endpoint {name} must sum to 100 (or 0), got {total}", target=target, details=details)
        for dep, pct in mirror.items():
            if dep not in deployments:
                raise bad(f"mirrorTraffic of endpoint {name} names deployment {dep!r}, which does not exist", target=f"properties.mirrorTraffic.{dep}")
            if not 0 <= pct <= 50:
                raise bad(f"mirror traffic to {dep!r} must be 0..50 percent, got {pct}", target=f"properties.mirrorTraffic.{dep}")
            if pct > 0 and traffic.get(dep, 0) > 0:
                raise bad(f"deployment {dep!r} cannot receive both live traffic and mirrored traffic", target=f"properties.mirrorTraffic.{dep}")

    def delete_endpoint(self, ws, key):
        if key not in ws.resources:
            return 204, None, {}
        self.busy(ws, key, f"endpoint {key.split('/')[1]}")
        ws.resources[key]["properties"]["provisioningState"] = "Deleting"

        def gone(op):
            for k in [k for k in ws.resources if k == key or k.startswith(key + "/")]:
                del ws.resources[k]

        op = self.start_op(ws, "delete", key, gone)
        return 202, None, self.lro_headers(op, ws, location=True)

    def put_deployment(self, ws, ekey, dname, dkey, body):
        ep = ws.resources.get(ekey)
        if ep is None:
            raise self.not_found(ws, ekey)
        if ep["properties"].get("provisioningState") in ("Deleting", "Failed") :
            raise bad(f"endpoint {ekey.split('/')[1]} is {ep['properties']['provisioningState']}: it takes no deployment", target="name")
        self.check_name(dname, ENDPOINT_NAME, "name")
        self.busy(ws, dkey, f"deployment {dname}")
        props = body["properties"]
        if body["location"].lower().replace(" ", "") != ep["location"].lower().replace(" ", ""):
            raise bad(f"location {body['location']!r} differs from the endpoint's {ep['location']!r}", target="location")
        model = props.get("model")
        if model:
            ref = model
            m = re.match(r"^azureml:([^:]+):([^:]+)$", model)
            if m:
                ref = f"models/{m.group(1)}/versions/{m.group(2)}"
            if "/models/" not in f"/{ref}" or self.s.resolve(ws, ref) is None:
                raise bad(f"model {model} does not exist in workspace {ws.name}; register the model version first", target="properties.model", code="UserError")
        env = props.get("environmentId")
        if env and self.s.resolve(ws, env) is None:
            raise bad(f"environment {env} does not exist", target="properties.environmentId", code="UserError")
        if props["endpointComputeType"] == "Managed" and not props.get("instanceType"):
            raise bad("a managed online deployment needs properties.instanceType (for example Standard_DS3_v2)", target="properties.instanceType")
        sku = body.get("sku") or {}
        if "capacity" in sku and sku["capacity"] < 1:
            raise bad(f"sku.capacity must be at least 1, got {sku['capacity']}", target="sku.capacity")
        collections = ((props.get("dataCollector") or {}).get("collections") or {})
        for cname, coll in collections.items():
            data_id = coll.get("dataId")
            if data_id and self.s.resolve(ws, data_id) is None:
                raise bad(f"data collector {cname}: data asset {data_id} does not exist", target=f"properties.dataCollector.collections.{cname}.dataId", code="UserError")
            rate = coll.get("samplingRate")
            if rate is not None and not 0 <= rate <= 1:
                raise bad(f"data collector {cname}: samplingRate must be 0..1, got {rate}", target=f"properties.dataCollector.collections.{cname}.samplingRate")
        existing = ws.resources.get(dkey)
        res = envelope(ws, dkey, body, "onlineEndpoints")
        res["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        if existing is not None:
            res["systemData"]["createdAt"] = existing["systemData"]["createdAt"]
        ws.resources[dkey] = res
        ws.order.setdefault(dkey, self.s._next())
        fail = self.fault_for("PUT", f"{ws.path}/{dkey}", "operation")
        op = self.start_op(ws, "create" if not existing else "update", dkey, lambda op: self.provisioned(ws, dkey, op), fail)
        return 201, res, self.lro_headers(op, ws, location=False)

    def delete_deployment(self, ws, ekey, dname, dkey):
        if dkey not in ws.resources:
            return 204, None, {}
        ep = ws.resources.get(ekey) or {"properties": {}}
        pct = (ep["properties"].get("traffic") or {}).get(dname, 0)
        if pct > 0:
            raise bad(f"deployment {dname} still receives {pct}% of the traffic of endpoint {ekey.split('/')[1]}; set it to 0 first", target="traffic", code="UserError")
        self.busy(ws, dkey, f"deployment {dname}")
        ws.resources[dkey]["properties"]["provisioningState"] = "Deleting"

        def gone(op):
            ws.resources.pop(dkey, None)

        op = self.start_op(ws, "delete", dkey, gone)
        return 202, None, self.lro_headers(op, ws, location=True)

    # --- operations ---------------------------------------------------------------------------

    def operation(self, kind: str, op_id: str):
        op = self.s.operations.get(op_id)
        if op is None:
            raise ArmError(404, "ResourceNotFound", f"operation {op_id} was not found")
        op.advance(True)
        if kind.lower() == "mfeoperationsstatus":
            body = {"id": f"/subscriptions/{op.ws.sub}/providers/{NS}/locations/{op.ws.location}/mfeOperationsStatus/{op.id}", "name": op.id, "status": op.status, "startTime": op.start}
            if op.end:
                body["endTime"] = op.end
            if op.status == "Failed":
                body["error"] = {"code": op.fail.get("code", "DeploymentFailed"), "message": op.fail.get("message", f"the {op.kind} of {op.key} failed (injected)")}
            headers = {"Retry-After": str(self.args.retry_after)} if op.status == "InProgress" else {}
            return 200, body, headers
        if op.status == "InProgress":
            return 202, None, self.lro_headers(op, op.ws, location=True)
        if op.status == "Failed":
            raise ArmError(400, op.fail.get("code", "OperationFailed"), op.fail.get("message", f"the {op.kind} of {op.key} failed (injected)"))
        return (204 if op.kind == "delete" else 200), None, {}

    # --- Azure Monitor: metrics of online endpoints and deployments ----------------------------

    def metrics(self, ws: Workspace, rel: str, resource_uri: str, query: dict):
        """`GET <resource>/providers/Microsoft.Insights/metrics` (api-version checked by the
        caller): the metrics of an online endpoint or deployment over the traffic recorded with
        `/fake/traffic`, in the shape of Azure Monitor's Metrics_List. Every query Azure refuses
        is a 400 `BadRequest` (the caller records it as a violation)."""
        parts = rel.split("/") if rel else []
        rtype = "/".join(["workspaces"] + [parts[i] for i in range(0, len(parts), 2)])
        kind = rtype.lower()
        if kind not in ("workspaces/onlineendpoints", "workspaces/onlineendpoints/deployments") or len(parts) % 2:
            raise bad(f"metrics of {NS}/{rtype} are not emulated by the fake (only online endpoints and their deployments)", code="BadRequest")
        key = next((k for k in ws.resources if k.lower() == rel.lower()), None)
        if key is None:
            raise self.not_found(ws, rel)
        rtype = next(t for t in METRIC_TYPES if t.lower() == kind)
        spec = METRIC_TYPES[rtype]
        namespace = f"{NS}/{rtype}"

        ns_asked = query.get("metricnamespace")
        if ns_asked and ns_asked.lower() != namespace.lower():
            raise bad(f"metricnamespace {ns_asked!r} is not the namespace of {rel} ({namespace})", code="BadRequest")
        if query.get("resultType", "Data").lower() != "data":
            raise bad(f"resultType {query['resultType']!r} is not emulated by the fake (only Data)", code="BadRequest")

        # metricnames: case-insensitive, as Azure; the answer spells them as Azure does.
        asked = [n.strip() for n in (query.get("metricnames") or "").split(",") if n.strip()]
        if not asked:
            raise bad("metricnames is required: the names of the metrics (comma separated) to retrieve", code="BadRequest")
        names: list[str] = []
        for n in asked:
            canon = next((v for v in spec["valid"] if v.lower() == n.lower()), None)
            if canon is None:
                raise bad(
                    f"Failed to find metric configuration for provider: {NS}, resource Type: {rtype}, metric: {n}, Valid metrics: {','.join(spec['valid'])}",
                    code="BadRequest",
                )
            if canon not in spec["metrics"]:
                raise bad(f"metric {canon} of {rtype} is not emulated by the fake (emulated: {', '.join(spec['metrics'])})", code="BadRequest")
            if canon not in names:
                names.append(canon)

        aggs = [a.strip().lower() for a in (query.get("aggregation") or "average").split(",") if a.strip()]
        for a in aggs:
            if a not in AGGREGATIONS:
                raise bad(f"aggregation {a!r} is not one of {', '.join(AGGREGATIONS)}", code="BadRequest")
        aggs = list(dict.fromkeys(aggs)) or ["average"]

        grain = (query.get("interval") or "PT1M").upper()
        if grain not in TIME_GRAINS:
            raise bad(f"interval {query.get('interval')!r} is not a time grain of Azure Monitor ({', '.join(TIME_GRAINS)})", code="BadRequest")
        step = TIME_GRAINS[grain]

        span = query.get("timespan")
        if span:
            first, sep, last = span.partition("/")
            try:
                if not sep:
                    raise ValueError(span)
                start, end = parse_time(first), parse_time(last)
            except ValueError:
                raise bad(f"timespan {span!r} is not startDateTime_ISO/endDateTime_ISO (e.g. 2026-12-02T05:00:00Z/2026-12-02T06:00:00Z)", code="BadRequest")
        else:  # Azure's default: the last hour
            end = datetime.datetime.now(datetime.timezone.utc)
            start = end - datetime.timedelta(hours=1)
        if end <= start:
            raise bad(f"timespan {span!r}: its end is not after its start", code="BadRequest")
        t0, t_end = int(start.timestamp()), end.timestamp()
        b0 = t0 - t0 % step
        buckets = max(1, math.ceil((t_end - b0) / step))
        if buckets > MAX_DATA_POINTS:
            raise bad(f"timespan {span!r} at {grain} makes {buckets} data points; the fake answers at most {MAX_DATA_POINTS}", code="BadRequest")

        raw_filter = (query.get("$filter") or "").strip()
        conditions = self.metrics_filter(raw_filter) if raw_filter else {}
        rollup = {d.strip().lower() for d in (query.get("rollupby") or "").split(",") if d.strip()}
        validate = (query.get("ValidateDimensions") or query.get("validatedimensions") or "true").lower() != "false"
        top = query.get("top")
        if top is not None:
            if not top.isdigit() or int(top) < 1:
                raise bad(f"top {top!r} is not a positive integer", code="BadRequest")
            top = int(top)
        elif raw_filter:
            top = 10  # Azure's default when a $filter is given
        order = (query.get("orderby") or "").split()
        if order:
            agg = {"sum": "total", "avg": "average", "min": "minimum", "max": "maximum"}.get(order[0].lower(), order[0].lower())
            if agg not in AGGREGATIONS or len(order) > 2 or (len(order) == 2 and order[1].lower() not in ("asc", "desc")):
                raise bad(f"orderby {query.get('orderby')!r} is not '<aggregation> [asc|desc]'", code="BadRequest")
            order = (agg, len(order) == 2 and order[1].lower() == "asc")

        # The requests recorded on the deployment, or on each deployment of the endpoint.
        # (Azure keeps a resource's metrics after it is deleted: so does the fake.)
        if kind.endswith("/deployments"):
            sources = [(key.rsplit("/", 1)[1], key)]
        else:
            sources = [(k.rsplit("/", 1)[1], k) for (w, k) in self.s.traffic if w == ws.path.lower() and k.startswith(key + "/deployments/")]
        entries = [
            (dep, minute, status, latency, count)
            for dep, k in sources
            for minute, status, latency, count in self.s.traffic.get((ws.path.lower(), k), [])
            if b0 <= minute < t_end
        ]

        value = []
        for name in names:
            m = spec["metrics"][name]
            dims = {d.lower(): d for d in m["dimensions"]}
            conds = {}
            for d, (written, values) in conditions.items():
                if d not in dims:
                    if validate:
                        raise bad(
                            f"Metric: {name} does not support requested dimension combination: {written}, supported ones are: {', '.join(m['dimensions']) or 'none'}",
                            code="BadRequest",
                        )
                    continue
                conds[dims[d]] = None if "*" in values else {v.lower() for v in values}
            for d in rollup:
                if d not in dims and validate:
                    raise bad(f"rollupby: metric {name} has no dimension {d}", code="BadRequest")
            split = [d for d in conds if d.lower() not in rollup]
            # series key -> minute -> [(latency, requests)]
            series: dict[tuple, dict[int, list]] = {} if split else {(): {}}
            for dep, minute, status, latency, count in entries:
                values = {d: DIMENSION_VALUES[d](dep, status) for d in conds}
                if any(allowed is not None and values[d].lower() not in allowed for d, allowed in conds.items()):
                    continue
                skey = tuple(values[d] for d in split)
                series.setdefault(skey, {}).setdefault(minute, []).append((latency, count))
            timeseries = []
            for skey, minutes in sorted(series.items()):
                # One sample a minute (the requests of the minute, or their percentile), then
                # each bucket aggregates its minutes' samples as Azure Monitor does.
                per_bucket: dict[int, list[float]] = {}
                for minute, reqs in minutes.items():
                    sample = float(sum(c for _, c in reqs)) if m["percentile"] is None else float(nearest_rank(reqs, m["percentile"]))
                    per_bucket.setdefault((minute - b0) // step, []).append(sample)
                data, sums = [], dict.fromkeys(AGGREGATIONS, 0.0)
                for i in range(buckets):
                    point = {"timeStamp": utc_stamp(b0 + i * step)}
                    samples = per_bucket.get(i)
                    if samples:
                        total = sum(samples)
                        full = {"total": total, "count": float(len(samples)), "average": total / len(samples), "minimum": min(samples), "maximum": max(samples)}
                        for a in AGGREGATIONS:
                            sums[a] += full[a]
                        point.update({a: full[a] for a in aggs})
                    data.append(point)
                meta = [{"name": {"value": d.lower(), "localizedValue": d.lower()}, "value": v} for d, v in zip(split, skey)]
                timeseries.append((sums, {"metadatavalues": meta, "data": data}))
            if order:
                timeseries.sort(key=lambda t: t[0][order[0]], reverse=not order[1])
            if top is not None:
                timeseries = timeseries[:top]
            value.append(
                {
                    "id": f"{resource_uri}/providers/Microsoft.Insights/metrics/{name}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": m["localized"]},
                    "displayDescription": m["description"],
                    "unit": m["unit"],
                    "timeseries": [t for _, t in timeseries],
                    "errorCode": "Success",
                }
            )
        return 200, {
            "cost": 0,
            "timespan": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
            "interval": grain,
            "value": value,
            "namespace": namespace.lower(),
            "resourceregion": ws.location,
        }, {}

    @staticmethod
    def metrics_filter(text: str) -> dict:
        """Azure Monitor's `$filter`: `<dim> eq '<value>'` clauses joined by `and`, values of one
        dimension joined by `or`; `'*'` is every value (a split). {dim lower: (dim, [values])}."""
        conds: dict[str, tuple[str, list[str]]] = {}
        pos, op, last = 0, None, None
        while True:
            m = FILTER_CLAUSE.match(text, pos)
            if not m:
                raise bad(f"$filter {text!r}: expected <dimension> eq '<value>' at {text[pos:pos + 40]!r} (the fake takes eq clauses joined by and/or)", code="BadRequest")
            dim, value = m.group(1), m.group(2).replace("''", "'")
            if op == "or":
                if dim.lower() != last:
                    raise bad(f"$filter {text!r}: the logical or operator cannot separate two different metadata names ({last}, {dim})", code="BadRequest")
                conds[last][1].append(value)
            else:
                if dim.lower() in conds:
                    raise bad(f"$filter {text!r}: dimension {dim} is named twice (join its values with or)", code="BadRequest")
                conds[dim.lower()] = (dim, [value])
            last, pos = dim.lower(), m.end()
            if pos >= len(text):
                return conds
            j = FILTER_JOIN.match(text, pos)
            if not j:
                raise bad(f"$filter {text!r}: expected and/or at {text[pos:pos + 40]!r}", code="BadRequest")
            op, pos = j.group(1).lower(), j.end()


# --- HTTP -------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fake-arm/1"
    protocol_version = "HTTP/1.1"
    state: State
    api: Api

    def log_message(self, fmt, *args):  # quiet: tests read /fake/requests instead
        if self.state.args.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.dispatch("GET")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def reply(self, status: int, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        if status != 204 and data:
            self.wfile.write(data)

    def dispatch(self, method: str):
        s = self.state
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.startswith("/fake/") or path == "/fake":
            return self.control(method, path, raw)
        body = None
        record = {"method": method, "path": path, "query": query, "authorized": False}
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    record["body"] = raw[:2000].decode("utf-8", "replace")
                    self.violation(method, path, None, [f"$: the body is not JSON: {e}"])
                    raise ArmError(400, "InvalidRequestContent", f"the request body is not valid JSON: {e}")
            record["body"] = body
            with s.lock:
                s.requests.append(record)
            self.authorize(record)
            with s.lock:
                for f in s.faults:
                    if f.get("status") and f["times"] > 0 and re.search(f["match"], f"{method} {path}"):
                        f["times"] -= 1
                        headers = {"Retry-After": str(f["retryAfter"])} if f.get("retryAfter") is not None else {}
                        code = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}.get(f["status"], "InjectedFault")
                        raise ArmError(f["status"], code, f"injected fault for {method} {path}", headers=headers)
            if m := MLFLOW_RE.match(path):
                ws = s.workspace(m.group(1), m.group(2), m.group(3))
                try:
                    result = ws.tracking.handle(method, m.group(4), query, body)
                except MlflowError as e:
                    record["status"] = e.status
                    return self.reply(e.status, e.body())
                record["status"] = 200
                return self.reply(200, result)
            if (m := WS_RE.match(path)) and (mm := METRICS_PATH_RE.match(path)):
                # Azure Monitor's metrics API: its own api-version (not Azure ML's).
                status, out, headers = self.metrics(method, path, m, mm.group(1), query)
                record["status"] = status
                return self.reply(status, out, headers)
            self.check_api_version(method, path, query)
            if m := OP_RE.match(path):
                with s.lock:
                    status, out, headers = self.api.operation(m.group(3), m.group(4))
            elif m := WS_RE.match(path):
                rel = (m.group(4) or "").strip("/")
                ws = s.workspace(m.group(1), m.group(2), m.group(3))
                model = contract.route(method, "/" + rel) if rel else None
                if model is not None:
                    if body is None:
                        self.violation(method, path, model, ["$: the request has no body"])
                        raise ArmError(400, "InvalidRequestContent", f"{method} {rel} needs a {model} body")
                    violations = contract.check(model, body)
                    if violations:
                        self.violation(method, path, model, [str(v) for v in violations])
                        first = violations[0]
                        raise ArmError(
                            400,
                            "UserError",
                            f"the request body does not match the {model} model of api-version {API_VERSION}: {first}"
                            + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                            target=first.path.removeprefix("$."),
                            details=[{"code": "InvalidRequestContent", "message": v.message, "target": v.path.removeprefix("$.")} for v in violations],
                        )
                elif method in ("PUT", "POST", "PATCH") and body and not rel.endswith(("/cancel", "/listKeys", "/token")):
                    self.violation(method, path, None, [f"$: the fake knows no model for {method} {rel or '(workspace)'}"])
                with s.lock:
                    status, out, headers = self.api.handle(method, ws, rel, query, body, path)
            else:
                self.violation(method, path, None, [f"the fake implements no route {method} {path}"])
                raise ArmError(404, "NotFound", f"no route {method} {path} (the fake serves workspaces, operations and MLflow)")
            record["status"] = status
            return self.reply(status, out, headers)
        except ArmError as e:
            if e.unimplemented:
                self.violation(method, path, None, [e.message])
            record["status"] = e.status
            return self.reply(e.status, e.body(), e.headers)
        except Exception as e:  # a bug of the fake: say so, as a 500 the client can report
            record["status"] = 500
            import traceback

            traceback.print_exc()
            return self.reply(500, ArmError(500, "InternalServerError", f"fake-arm bug: {e!r}").body())

    def authorize(self, record):
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or is not a Bearer token.",
                headers={"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'},
            )
        token = auth[7:].strip()
        expected = self.state.args.token
        if expected and token != expected and token != self.state.job_token:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        record["authorized"] = True

    def check_api_version(self, method, path, query):
        version = query.get("api-version")
        if version == API_VERSION:
            return
        if version is None:
            self.violation(method, path, None, ["api-version is missing"])
            raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        self.violation(method, path, None, [f"api-version {version!r} instead of {API_VERSION}"])
        raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.")

    def metrics(self, method, path, m, resource_uri, query):
        """Azure Monitor's metrics of a workspace resource (Api.metrics). A query Azure would
        refuse (400) is recorded as a violation too: the client has a bug."""
        s = self.state
        try:
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{method} of Microsoft.Insights/metrics: Azure Monitor's Metrics_List of a resource is a GET")
            version = query.get("api-version")
            if version is None:
                raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
            if version != METRICS_API_VERSION:
                raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. The supported versions are '{METRICS_API_VERSION}'.")
            ws = s.workspace(m.group(1), m.group(2), m.group(3))
            rel = METRICS_PATH_RE.match(m.group(4)).group(1).strip("/")
            with s.lock:
                return self.api.metrics(ws, rel, resource_uri, query)
        except ArmError as e:
            if e.status in (400, 405):
                self.violation(method, path, None, [f"Microsoft.Insights/metrics: {e.message}"])
            raise

    def violation(self, method, path, model, messages):
        entry = {"method": method, "path": path, "model": model, "violations": messages}
        with self.state.lock:
            self.state.violations.append(entry)
        if self.state.args.violations:
            with open(self.state.args.violations, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def control(self, method, path, raw):
        s = self.state
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self.reply(400, {"error": "body is not JSON"})
        with s.lock:
            if path == "/fake/health":
                return self.reply(200, {"status": "ok", "blob": s.account.url if s.account else None})
            if path == "/fake/requests" and method == "GET":
                return self.reply(200, s.requests)
            if path == "/fake/violations" and method == "GET":
                return self.reply(200, s.violations)
            if path == "/fake/reset" and method == "POST":
                s.reset()
                return self.reply(200, {})
            if path == "/fake/faults" and method == "POST":
                if not isinstance(body.get("match"), str) or not (body.get("status") or body.get("operation")):
                    return self.reply(400, {"error": "a fault needs match (regex on 'METHOD /path') and status (429, 500, 503) or operation ('Failed')"})
                try:
                    re.compile(body["match"])
                except re.error as e:
                    return self.reply(400, {"error": f"match is not a regex: {e}"})
                fault = {"match": body["match"], "status": body.get("status"), "operation": body.get("operation"), "times": int(body.get("times", 1)), "retryAfter": body.get("retryAfter"), "code": body.get("code"), "message": body.get("message")}
                fault = {k: v for k, v in fault.items() if v is not None}
                s.faults.append(fault)
                return self.reply(201, fault)
            if path == "/fake/state" and method == "POST":
                # What changes behind mlctl's back: Azure marking a deployment Failed (its
                # containers crash), or a person scaling it (`az ml online-deployment update
                # --instance-count N`). Applies to every tracked resource whose key
                # (`onlineEndpoints/<name>/deployments/<name>`) matches, case-insensitively.
                if not isinstance(body.get("match"), str) or not ("provisioningState" in body or "capacity" in body):
                    return self.reply(400, {"error": "a state change needs match (regex on the resource's key) and provisioningState or capacity"})
                try:
                    rx = re.compile(body["match"], re.IGNORECASE)
                except re.error as e:
                    return self.reply(400, {"error": f"match is not a regex: {e}"})
                changed = []
                for ws in s.workspaces.values():
                    for key, res in ws.resources.items():
                        if not rx.search(key):
                            continue
                        if "provisioningState" in body:
                            res.setdefault("properties", {})["provisioningState"] = str(body["provisioningState"])
                        if "capacity" in body:
                            res.setdefault("sku", {})["capacity"] = int(body["capacity"])
                        changed.append(key)
                return self.reply(200, {"changed": changed})
            if path == "/fake/traffic" and method == "POST":
                try:
                    return self.reply(201, self.traffic(body))
                except ArmError as e:
                    return self.reply(e.status, {"error": e.message})
            if path == "/fake/faults" and method == "DELETE":
                s.faults.clear()
                return self.reply(200, {})
            if path == "/fake/capture" and method == "POST":
                try:
                    return self.reply(201, self.capture(body))
                except ArmError as e:
                    return self.reply(e.status, e.body())
                except BlobError as e:
                    return self.reply(502, {"error": {"code": "BlobError", "message": str(e)}})
            m = re.match(r"^/fake/jobs/([^/]+)/log$", path)
            if m and method == "GET":
                for ws in s.workspaces.values():
                    log = Path(s.workdir) / ws.slug / m.group(1) / "logs" / "user_logs" / "std_log.txt"
                    if log.exists():
                        data = log.read_bytes()
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain; charset=utf-8")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return None
                return self.reply(404, {"error": f"no log for job {m.group(1)}"})
        return self.reply(404, {"error": f"no fake control route {method} {path}"})


    def traffic(self, body: dict) -> dict:
        """Requests that reached a deployment, for its Azure Monitor metrics (the fake serves no
        scoring). Body: {"match": "<regex on the resource key>", "requests": N, "status"?: 200,
        "latencyMs"?: 5.0, "time"?: RFC 3339 (default now)}; the match must select exactly one
        deployment (`onlineEndpoints/<e>/deployments/<d>`, case-insensitively)."""
        s = self.state
        if not isinstance(body, dict) or not isinstance(body.get("match"), str):
            raise bad("traffic needs match (regex on the deployment's key, onlineEndpoints/<e>/deployments/<d>) and requests (N >= 0)")
        try:
            rx = re.compile(body["match"], re.IGNORECASE)
        except re.error as e:
            raise bad(f"match is not a regex: {e}")
        n, status, latency = body.get("requests"), body.get("status", 200), body.get("latencyMs", 5.0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad(f"requests must be an integer >= 0, got {n!r}")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise bad(f"status must be an HTTP status (100..599), got {status!r}")
        if not isinstance(latency, (int, float)) or isinstance(latency, bool) or not latency >= 0:
            raise bad(f"latencyMs must be a number >= 0, got {latency!r}")
        try:
            at = parse_time(body["time"]) if body.get("time") is not None else datetime.datetime.now(datetime.timezone.utc)
        except (ValueError, TypeError, AttributeError):
            raise bad(f"time {body.get('time')!r} is not an RFC 3339 time (2026-12-02T05:00:00Z)")
        deployments = [(ws, k) for ws in s.workspaces.values() for k in ws.resources if "/deployments/" in k]
        matched = [(ws, k) for ws, k in deployments if rx.search(k)]
        if len(matched) != 1:
            shown = matched if matched else deployments
            names = ", ".join(k for _, k in shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
            if matched:
                raise bad(f"match {body['match']!r} selects {len(matched)} deployments, not one: {names}")
            raise bad(f"match {body['match']!r} selects no deployment; the deployments are: {names or 'none'}")
        ws, key = matched[0]
        if n:
            minute = int(at.timestamp()) // 60 * 60
            s.traffic.setdefault((ws.path.lower(), key), []).append((minute, status, float(latency), n))
        return {"recorded": key, "requests": n}

    def capture(self, body: dict) -> dict:
        """What a deployment's data collector would write for scored requests: one JSON-lines
        file per enabled collection (model_inputs, model_outputs) under
        `<the collection's data asset dataUri>/<collection>/<yyyy>/<MM>/<dd>/<HH>/`, the rows of
        one request sharing its correlationid. Body: {"deployment": "<ARM id>", "requests":
        [{"inputs": [{col: v}], "outputs": [pred, ...]}], "time"?: RFC 3339}."""
        s = self.state
        if s.account is None:
            raise ArmError(503, "ServiceUnavailable", "no blob emulator (--blob-url)")
        dep_id = body.get("deployment", "")
        m = WS_RE.match(dep_id)
        if not m or not isinstance(body.get("requests"), list):
            raise bad("capture needs deployment (the deployment's ARM id) and requests [{inputs, outputs}]", target="deployment")
        ws = s.workspace(m.group(1), m.group(2), m.group(3))
        rel = (m.group(4) or "").strip("/")
        dep = ws.resources.get(rel)
        if dep is None or "/deployments/" not in rel:
            raise self.api.not_found(ws, rel)
        collections = ((dep["properties"].get("dataCollector") or {}).get("collections") or {})
        at = datetime.datetime.fromisoformat((body.get("time") or now()).replace("Z", "+00:00"))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        written = []
        for cname, field in (("model_inputs", "inputs"), ("model_outputs", "outputs")):
            coll = collections.get(cname)
            if not coll or str(coll.get("dataCollectionMode", "Enabled")).lower() != "enabled":
                continue
            asset = s.resolve(ws, coll.get("dataId", ""))
            if asset is None:
                raise bad(f"collection {cname}: its data asset {coll.get('dataId')} does not exist", target=cname)
            lines = []
            for req in body["requests"]:
                rid = req.get("correlationid") or str(uuid.uuid4())
                req["correlationid"] = rid  # the outputs of a request share its inputs' id
                lines.append(
                    json.dumps(
                        {
                            "specversion": "1.0",
                            "id": str(uuid.uuid4()),
                            "source": dep["id"],
                            "type": f"azureml.inference.{cname}",
                            "datacontenttype": "application/json",
                            "time": stamp,
                            "data": req.get(field, []),
                            "correlationid": rid,
                            "xrequestid": rid,
                            "modelversion": (dep["properties"].get("model") or "").rstrip("/").rsplit("/", 1)[-1],
                        }
                    )
                )
            base = asset["properties"]["dataUri"].rstrip("/")
            url = f"{base}/{cname}/{at:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl"
            s.account.put(url, ("\n".join(lines) + "\n").encode(), "application/json")
            written.append(url)
        return {"written": written}


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client closing an idle keep-alive connection is not a bug of the fake (the test
        # harness treats a traceback on stderr as one): say nothing. Anything else is printed.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="A fake Azure ML REST API (ARM) for tests; binds 127.0.0.1.")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one, printed)")
    ap.add_argument("--blob-url", help="the blob emulator's account URL, e.g. http://127.0.0.1:10000/devstoreaccount1")
    ap.add_argument("--blob-key", default=EMULATOR_KEY, help="its account key (default: the emulator's well-known key)")
    ap.add_argument("--violations", help="append every contract violation to this file (JSON lines)")
    ap.add_argument("--token", help="accept only this bearer token (default: any)")
    ap.add_argument("--location", default="westeurope", help="the workspaces' location")
    ap.add_argument("--workspace", action="append", default=[], help="SUB/RG/WS that exists (repeatable; default: any)")
    ap.add_argument("--compute", action="append", default=None, help="a compute that exists (repeatable; default: cpu-cluster)")
    ap.add_argument("--page-size", type=int, default=2, help="items per page of a list (small, so clients must follow nextLink)")
    ap.add_argument("--lro-polls", type=int, default=1, help="status reads a long-running operation answers InProgress")
    ap.add_argument("--lro-seconds", type=float, default=30.0, help="...or seconds after which it is done anyway")
    ap.add_argument("--retry-after", type=int, default=0, help="Retry-After seconds sent with operations")
    ap.add_argument("--work-dir", help="where jobs run (default: a new temp dir)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.compute is None:
        args.compute = ["cpu-cluster"]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    state = State(args)
    if state.account is not None:
        try:
            state.account.create_container(CODE_CONTAINER)
            state.account.create_container(ARTIFACTS_CONTAINER)
        except BlobError as e:
            print(f"fake-arm: the blob emulator at {args.blob_url} does not answer: {e}", file=sys.stderr)
            return 1
    handler = type("BoundHandler", (Handler,), {"state": state, "api": Api(state)})
    server = Server(("127.0.0.1", args.port), handler)
    port = server.server_address[1]
    state.base_url = f"http://127.0.0.1:{port}"

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"fake-arm listening on {state.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        state.runner.stop_all()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
