"""The fake ARM server behaves as the Azure ML REST docs say, and runs jobs for real.

Each test class starts its own fake (port 0: a free one) as a subprocess. The job tests need
a blob emulator: MLCTL_AZURITE_URL (e.g. http://127.0.0.1:10000/devstoreaccount1); without it
they skip with the reason printed, and fail under CI=true.

Run: `.ci/azureml-fake.sh test` (or `<venv python> -m unittest -v` in this directory).
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "ml", "iris-ws"
W = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
Q = "api-version=2025-12-01"
AZURITE = os.environ.get("MLCTL_AZURITE_URL", "").rstrip("/")


def need_azurite(test):
    if AZURITE:
        return test
    if os.environ.get("CI") == "true":
        raise RuntimeError("MLCTL_AZURITE_URL is not set and CI=true: the job tests of the fake need Azurite (.ci/azurite.sh)")
    print(f"\nskipped {test.__name__}: MLCTL_AZURITE_URL is not set (start Azurite, see README.md)", file=sys.stderr)
    return unittest.skip("MLCTL_AZURITE_URL is not set")(test)


class Fake:
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="fake-arm-test-")
        self.violations_file = Path(self.dir) / "violations.jsonl"
        args = [sys.executable, str(HERE / "fake_arm.py"), "--port", "0", "--violations", str(self.violations_file), "--work-dir", self.dir, *extra]
        if AZURITE:
            args += ["--blob-url", AZURITE]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the fake did not start: {line!r} {self.proc.stderr.read()}")
        self.url = m.group(1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def call(self, method, path, body=None, auth=True, query=Q, raw_url=None):
        url = raw_url or (f"{self.url}{path}" + (f"?{query}" if query else ""))
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer test-token"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, (json.loads(text) if text else None), dict(e.headers)

    def arm(self, method, rel, body=None, **kw):
        return self.call(method, f"{W}/{rel}" if rel else W, body, **kw)

    def violations(self):
        return self.call("GET", "/fake/violations", query=None)[1]

    def wait_job(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job, _ = self.arm("GET", f"jobs/{name}")
            assert status == 200, job
            if job["properties"]["status"] in ("Completed", "Failed", "Canceled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {name} did not finish in {timeout}s: {job['properties']['status']}")


def env_version(fake, name="mlctl"):
    status, body, _ = fake.arm("PUT", f"environments/{name}/versions/1", {"properties": {"image": "ghcr.io/mlctl/mlctl:test"}})
    assert status in (200, 201), body
    return body["id"]


def command_job(env_id, **props):
    return {"properties": {"jobType": "Command", "command": "true", "environmentId": env_id, "experimentName": "iris", **props}}


class Protocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = Fake()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        self.fake.call("POST", "/fake/reset", {}, query=None)

    def test_requests_without_a_bearer_token_get_401(self):
        status, body, headers = self.fake.arm("GET", "", auth=False)
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "AuthenticationFailed")
        self.assertIn("Bearer", headers["WWW-Authenticate"])
        (recorded,) = self.fake.call("GET", "/fake/requests", query=None)[1]
        self.assertEqual((recorded["status"], recorded["authorized"]), (401, False))

    def test_the_workspace_names_its_location_and_mlflow_tracking_uri(self):
        status, ws, _ = self.fake.arm("GET", "")
        self.assertEqual(status, 200)
        self.assertEqual(ws["location"], "westeurope")
        host = self.fake.url.removeprefix("http://")
        self.assertEqual(ws["properties"]["mlFlowTrackingUri"], f"azureml://{host}/mlflow/v1.0{W}")

    def test_a_wrong_api_version_is_refused_and_recorded(self):
        status, body, _ = self.fake.arm("GET", "jobs", query="api-version=2023-04-01")
        self.assertEqual((status, body["error"]["code"]), (400, "InvalidApiVersionParameter"))
        self.assertEqual(self.fake.violations()[0]["violations"], ["api-version '2023-04-01' instead of 2025-12-01"])

    def test_a_body_that_breaks_the_contract_is_refused_with_its_path(self):
        env = env_version(self.fake)
        job = command_job(env)
        job["properties"]["code_id"] = "x"
        status, body, _ = self.fake.arm("PUT", "jobs/j1", job)
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["target"], "properties.code_id")
        self.assertIn("'codeId'", body["error"]["message"])
        lines = [json.loads(l) for l in self.fake.violations_file.read_text().splitlines()]
        self.assertEqual(lines[-1]["model"], "JobBase")
        self.assertEqual(self.fake.arm("GET", "jobs/j1")[0], 404)

    def test_an_unknown_resource_is_a_404_arm_error(self):
        status, body, _ = self.fake.arm("GET", "models/nope/versions/1")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "ResourceNotFound")
        self.assertIn("models/versions/1", body["error"]["message"])

    def test_an_unknown_route_is_a_violation(self):
        self.assertEqual(self.fake.arm("GET", "batchEndpoints")[0], 404)
        self.assertIn("batchEndpoints", self.fake.violations()[0]["violations"][0])

    def test_injected_faults_answer_with_retry_after_then_stop(self):
        fault = {"match": r"^GET .*/models$", "status": 429, "times": 2, "retryAfter": 1}
        self.assertEqual(self.fake.call("POST", "/fake/faults", fault, query=None)[0], 201)
        got = [self.fake.arm("GET", "models") for _ in range(3)]
        self.assertEqual([g[0] for g in got], [429, 429, 200])
        self.assertEqual(got[0][2]["Retry-After"], "1")
        self.assertEqual(got[0][1]["error"]["code"], "TooManyRequests")

    def test_lists_are_paged_through_next_link(self):
        for v in ("1", "2", "3"):
            body = {"properties": {"modelUri": f"https://a.blob.core.windows.net/c/m{v}/", "modelType": "custom_model"}}
            self.assertEqual(self.fake.arm("PUT", f"models/iris/versions/{v}", body)[0], 201)
        status, page, _ = self.fake.arm("GET", "models/iris/versions")
        self.assertEqual(len(page["value"]), 2)
        _, rest, _ = self.fake.call("GET", None, raw_url=page["nextLink"])
        self.assertNotIn("nextLink", rest)
        names = [m["name"] for m in page["value"] + rest["value"]]
        self.assertEqual(sorted(names), ["1", "2", "3"])
        _, container, _ = self.fake.arm("GET", "models/iris")
        self.assertEqual((container["properties"]["latestVersion"], container["properties"]["nextVersion"]), ("3", "4"))

    def test_lists_filter_on_tags_properties_and_archived(self):
        env = env_version(self.fake)
        for name, tags, archived in (("j-a", {"mlctl:project": "iris"}, False), ("j-b", {"mlctl:project": "wine"}, False), ("j-c", {"mlctl:project": "iris"}, True)):
            job = command_job(env, tags=tags, isArchived=archived, properties={"mlctl.resource": name})
            self.assertEqual(self.fake.arm("PUT", f"jobs/{name}", job)[0], 201)

        def names(query):
            out, url = [], None
            status, page, _ = self.fake.arm("GET", "jobs", query=f"{Q}&{query}")
            while True:
                self.assertEqual(status, 200, page)
                out += [j["name"] for j in page["value"]]
                if "nextLink" not in page:
                    return sorted(out)
                status, page, _ = self.fake.call("GET", None, raw_url=page["nextLink"])

        self.assertEqual(names("tag=mlctl:project"), ["j-a", "j-b"])
        self.assertEqual(names(urllib.parse.urlencode({"tags": "mlctl:project=iris"})), ["j-a"])
        self.assertEqual(names(urllib.parse.urlencode({"tags": "mlctl:project=iris", "listViewType": "All"})), ["j-a", "j-c"])
        self.assertEqual(names(urllib.parse.urlencode({"properties": "mlctl.resource=j-b"})), ["j-b"])
        self.assertEqual(names("listViewType=ArchivedOnly"), ["j-c"])

    def test_an_asset_version_is_immutable(self):
        body = {"properties": {"dataType": "uri_file", "dataUri": "https://a.blob.core.windows.net/c/x.csv"}}
        self.assertEqual(self.fake.arm("PUT", "data/iris/versions/1", body)[0], 201)
        body["properties"]["description"] = "same data"
        self.assertEqual(self.fake.arm("PUT", "data/iris/versions/1", body)[0], 200)
        body["properties"]["dataUri"] = "https://a.blob.core.windows.net/c/y.csv"
        status, err, _ = self.fake.arm("PUT", "data/iris/versions/1", body)
        self.assertEqual((status, err["error"]["target"]), (409, "properties.dataUri"))

    def test_a_job_on_a_missing_compute_is_refused(self):
        job = command_job(env_version(self.fake), computeId=f"{W}/computes/gpu-cluster")
        status, body, _ = self.fake.arm("PUT", "jobs/j2", job)
        self.assertEqual((status, body["error"]["target"]), (400, "properties.computeId"))
        self.assertIn("cpu-cluster", body["error"]["message"])

    def test_a_command_referencing_an_undeclared_input_is_refused(self):
        job = command_job(env_version(self.fake), command="cat ${{inputs.train}}")
        status, body, _ = self.fake.arm("PUT", "jobs/j3", job)
        self.assertEqual((status, body["error"]["target"]), (400, "properties.command"))

    def test_a_grid_sweep_takes_only_choices(self):
        env = env_version(self.fake)
        sweep = {
            "properties": {
                "jobType": "Sweep",
                "trial": {"command": "echo ${{search_space.lr}}", "environmentId": env},
                "searchSpace": {"lr": ["uniform", [0.1, 0.2]]},
                "samplingAlgorithm": {"samplingAlgorithmType": "Grid"},
                "objective": {"primaryMetric": "accuracy", "goal": "Maximize"},
                "limits": {"jobLimitsType": "Sweep", "maxTotalTrials": 2},
            }
        }
        status, body, _ = self.fake.arm("PUT", "jobs/s1", sweep)
        self.assertEqual((status, body["error"]["target"]), (400, "properties.searchSpace.lr"))


def endpoint(traffic=None, auth="Key"):
    return {"location": "westeurope", "identity": {"type": "SystemAssigned"}, "tags": {"mlctl:project": "iris"}, "properties": {"authMode": auth, "traffic": traffic or {}}}


class Endpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = Fake()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        self.fake.call("POST", "/fake/reset", {}, query=None)

    def follow(self, headers):
        url = headers["Azure-AsyncOperation"]
        states = []
        for _ in range(10):
            status, op, _ = self.fake.call("GET", None, raw_url=url)
            self.assertEqual(status, 200)
            states.append(op["status"])
            if op["status"] != "InProgress":
                return states, op
        raise AssertionError(states)

    def model(self):
        body = {"properties": {"modelUri": "https://a.blob.core.windows.net/c/m/", "modelType": "custom_model"}}
        return self.fake.arm("PUT", "models/iris/versions/1", body)[1]["id"]

    def deployment(self, model_id, capacity=1):
        return {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": capacity},
            "properties": {"endpointComputeType": "Managed", "model": model_id, "instanceType": "Standard_DS3_v2", "scaleSettings": {"scaleType": "Default"}},
        }

    def create(self, name="iris"):
        status, ep, headers = self.fake.arm("PUT", f"onlineEndpoints/{name}", endpoint())
        self.assertEqual(status, 201)
        self.assertEqual(ep["properties"]["provisioningState"], "Creating")
        self.assertIn("mfeOperationsStatus", headers["Azure-AsyncOperation"])
        states, _ = self.follow(headers)
        self.assertEqual(states, ["InProgress", "Succeeded"])
        self.assertEqual(self.fake.arm("GET", f"onlineEndpoints/{name}")[1]["properties"]["provisioningState"], "Succeeded")

    def test_an_endpoint_and_a_deployment_provision_through_async_operations(self):
        self.create()
        status, dep, headers = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", self.deployment(self.model()))
        self.assertEqual(status, 201)
        self.follow(headers)
        status, ep, headers = self.fake.arm("PUT", "onlineEndpoints/iris", endpoint({"blue": 100}))
        self.assertEqual(status, 201)
        self.follow(headers)
        self.assertEqual(self.fake.arm("GET", "onlineEndpoints/iris")[1]["properties"]["traffic"], {"blue": 100})
        _, keys, _ = self.fake.arm("POST", "onlineEndpoints/iris/listKeys")
        self.assertEqual(sorted(keys), ["primaryKey", "secondaryKey"])
        self.assertEqual(self.fake.violations(), [])

    def test_a_deployment_changed_behind_the_clients_back_reads_back_changed(self):
        self.create()
        _, _, h = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", self.deployment(self.model()))
        self.follow(h)
        status, body, _ = self.fake.call("POST", "/fake/state", {"match": "onlineEndpoints/iris/deployments/", "provisioningState": "Failed", "capacity": 3}, query=None)
        self.assertEqual((status, len(body["changed"])), (200, 1))
        dep = self.fake.arm("GET", "onlineEndpoints/iris/deployments/blue")[1]
        self.assertEqual((dep["properties"]["provisioningState"], dep["sku"]["capacity"]), ("Failed", 3))
        status, _, _ = self.fake.call("POST", "/fake/state", {"match": "x"}, query=None)
        self.assertEqual(status, 400)
        self.assertEqual(self.fake.violations(), [])

    def test_traffic_must_sum_to_100_and_name_existing_deployments(self):
        self.create()
        status, body, _ = self.fake.arm("PUT", "onlineEndpoints/iris", endpoint({"green": 100}))
        self.assertEqual((status, body["error"]["target"]), (400, "properties.traffic.green"))
        _, _, h = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", self.deployment(self.model()))
        self.follow(h)
        _, _, h = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/green", self.deployment(self.model()))
        self.follow(h)
        status, body, _ = self.fake.arm("PUT", "onlineEndpoints/iris", endpoint({"blue": 60, "green": 30}))
        self.assertEqual((status, body["error"]["target"]), (400, "properties.traffic"))
        self.assertIn("got 90", body["error"]["message"])
        self.assertEqual(len(body["error"]["details"]), 2)

    def test_a_deployment_of_an_unknown_model_is_refused(self):
        self.create()
        status, body, _ = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", self.deployment(f"{W}/models/nope/versions/9"))
        self.assertEqual((status, body["error"]["target"]), (400, "properties.model"))

    def test_a_second_change_while_one_is_in_progress_is_a_conflict(self):
        self.fake.arm("PUT", "onlineEndpoints/iris", endpoint())
        status, body, _ = self.fake.arm("PUT", "onlineEndpoints/iris", endpoint())
        self.assertEqual((status, body["error"]["code"]), (409, "Conflict"))

    def test_an_injected_operation_failure_fails_the_provisioning(self):
        self.create()
        fault = {"match": "deployments/blue$", "operation": "Failed", "code": "ResourceNotReady", "message": "image pull failed"}
        self.fake.call("POST", "/fake/faults", fault, query=None)
        _, _, h = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", self.deployment(self.model()))
        states, op = self.follow(h)
        self.assertEqual(states[-1], "Failed")
        self.assertEqual(op["error"], {"code": "ResourceNotReady", "message": "image pull failed"})
        self.assertEqual(self.fake.arm("GET", "onlineEndpoints/iris/deployments/blue")[1]["properties"]["provisioningState"], "Failed")

    def test_delete_is_followed_through_location_until_204(self):
        self.create()
        status, _, headers = self.fake.arm("DELETE", "onlineEndpoints/iris")
        self.assertEqual(status, 202)
        polls = [self.fake.call("GET", None, raw_url=headers["Location"])[0] for _ in range(2)]
        self.assertEqual(polls, [202, 204])
        self.assertEqual(self.fake.arm("GET", "onlineEndpoints/iris")[0], 404)
        self.assertEqual(self.fake.arm("DELETE", "onlineEndpoints/iris")[0], 204)


MQ = "2024-02-01"  # Azure Monitor's api-version
BLUE, GREEN = "onlineEndpoints/iris/deployments/blue", "onlineEndpoints/iris/deployments/green"


class Metrics(unittest.TestCase):
    """Azure Monitor's metrics of online endpoints and deployments, over /fake/traffic."""

    @classmethod
    def setUpClass(cls):
        cls.fake = Fake()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    follow, model, deployment, create = Endpoints.follow, Endpoints.model, Endpoints.deployment, Endpoints.create

    def setUp(self):
        self.fake.call("POST", "/fake/reset", {}, query=None)
        self.deployments()

    def deployments(self):
        self.create()
        model = self.model()
        for name in ("blue", "green"):
            status, _, h = self.fake.arm("PUT", f"onlineEndpoints/iris/deployments/{name}", self.deployment(model))
            self.assertEqual(status, 201)
            self.follow(h)

    def traffic(self, match, requests, status=200, latency=None, time="2026-12-02T05:01:10Z"):
        body = {"match": match, "requests": requests, "status": status, "time": time}
        if latency is not None:
            body["latencyMs"] = latency
        return self.fake.call("POST", "/fake/traffic", body, query=None)

    def metrics(self, rel, status=200, **params):
        q = {"api-version": MQ, "timespan": "2026-12-02T05:00:00Z/2026-12-02T05:05:00Z", "interval": "PT1M", **params}
        q = {k: v for k, v in q.items() if v is not None}
        got, body, _ = self.fake.call("GET", f"{W}/{rel}/providers/Microsoft.Insights/metrics", query=urllib.parse.urlencode(q))
        self.assertEqual(got, status, body)
        return body

    @staticmethod
    def by(metric, dim=None):
        """{dimension value (or None): [the data points' values (None: no data)]}, per series."""
        out = {}
        for ts in metric["timeseries"]:
            meta = {d["name"]["value"]: d["value"] for d in ts["metadatavalues"]}
            out[meta.get(dim) if dim else None] = [{k: v for k, v in p.items() if k != "timeStamp"} or None for p in ts["data"]]
        return out

    def test_requests_per_minute_split_by_envoy_response_code_count_each_code_in_its_minute(self):
        self.assertEqual(self.traffic("iris/deployments/blue", 7)[:2], (201, {"recorded": BLUE, "requests": 7}))
        self.traffic("blue", 2, status=503, time="2026-12-02T05:01:50.250Z")
        self.traffic("blue", 3, time="2026-12-02T05:03:00Z")
        self.traffic("blue", 4, time="2026-12-02T05:07:00Z")  # after the timespan
        self.traffic("green", 5)  # another deployment
        body = self.metrics(BLUE, metricnames="RequestsPerMinute", aggregation="total", **{"$filter": "envoy_response_code eq '*'"})
        self.assertEqual((body["timespan"], body["interval"], body["resourceregion"]), ("2026-12-02T05:00:00Z/2026-12-02T05:05:00Z", "PT1M", "westeurope"))
        self.assertEqual(body["namespace"], "microsoft.machinelearningservices/workspaces/onlineendpoints/deployments")
        (rpm,) = body["value"]
        self.assertEqual((rpm["id"], rpm["type"], rpm["unit"], rpm["errorCode"]), (f"{W}/{BLUE}/providers/Microsoft.Insights/metrics/RequestsPerMinute", "Microsoft.Insights/metrics", "Count", "Success"))
        self.assertEqual(rpm["name"], {"value": "RequestsPerMinute", "localizedValue": "Requests Per Minute"})
        self.assertEqual(rpm["timeseries"][0]["metadatavalues"], [{"name": {"value": "envoy_response_code", "localizedValue": "envoy_response_code"}, "value": "200"}])
        self.assertEqual(self.by(rpm, "envoy_response_code"), {"200": [None, {"total": 7.0}, None, {"total": 3.0}, None], "503": [None, {"total": 2.0}, None, None, None]})
        # A minute without data carries only its timeStamp, as Azure leaves the value out.
        self.assertEqual(rpm["timeseries"][0]["data"][0], {"timeStamp": "2026-12-02T05:00:00Z"})
        # Unsplit: one series of every code; coarser interval: the minutes' samples aggregated.
        body = self.metrics(BLUE, metricnames="requestsperminute", aggregation="Total,Count,Average,Maximum", interval="PT5M")
        self.assertEqual(body["value"][0]["name"]["value"], "RequestsPerMinute")
        self.assertEqual(self.by(body["value"][0]), {None: [{"total": 12.0, "count": 2.0, "average": 6.0, "maximum": 9.0}]})
        recorded = [r for r in self.fake.call("GET", "/fake/requests", query=None)[1] if r["path"].endswith("/metrics")]
        self.assertEqual([(r["status"], r["authorized"]) for r in recorded], [(200, True), (200, True)])
        self.assertEqual(recorded[0]["query"]["$filter"], "envoy_response_code eq '*'")
        self.assertEqual(self.fake.violations(), [])

    def test_endpoint_metrics_filter_by_deployment_and_split_by_status_code_class(self):
        self.traffic("blue", 4)
        self.traffic("blue", 1, status=500)
        self.traffic("green", 6)
        self.traffic("green", 2, status=404, time="2026-12-02T05:02:00Z")
        ep = "onlineEndpoints/iris"
        body = self.metrics(ep, metricnames="RequestsPerMinute", aggregation="total", **{"$filter": "deployment eq 'blue' and statusCodeClass eq '*'"})
        self.assertEqual(body["namespace"], "microsoft.machinelearningservices/workspaces/onlineendpoints")
        series = body["value"][0]["timeseries"]
        self.assertEqual(
            [[(d["name"]["value"], d["value"]) for d in ts["metadatavalues"]] for ts in series],
            [[("deployment", "blue"), ("statuscodeclass", "2xx")], [("deployment", "blue"), ("statuscodeclass", "5xx")]],
        )
        self.assertEqual([ts["data"][1].get("total") for ts in series], [4.0, 1.0])
        # Without a dimension in $filter: one series of every deployment and status.
        body = self.metrics(ep, metricnames="RequestsPerMinute", aggregation="total")
        self.assertEqual(self.by(body["value"][0]), {None: [None, {"total": 11.0}, {"total": 2.0}, None, None]})
        # A filtered dimension is part of each series (as in Azure) unless rolled up.
        body = self.metrics(ep, metricnames="RequestsPerMinute", aggregation="total", rollupby="deployment", **{"$filter": "deployment eq 'green' and statusCode eq '404' or statusCode eq '200'"})
        self.assertEqual(body["value"][0]["timeseries"][0]["metadatavalues"][0]["name"]["value"], "statuscode")
        self.assertEqual(self.by(body["value"][0], "statuscode"), {"200": [None, {"total": 6.0}, None, None, None], "404": [None, None, {"total": 2.0}, None, None]})
        # A split with no value in the span has no series at all.
        body = self.metrics(ep, metricnames="RequestsPerMinute", timespan="2026-12-02T06:00:00Z/2026-12-02T06:05:00Z", **{"$filter": "deployment eq '*'"})
        self.assertEqual(body["value"][0]["timeseries"], [])
        # top (10 by default once a $filter is given) and orderby bound a split.
        body = self.metrics(ep, metricnames="RequestsPerMinute", aggregation="total", top="1", orderby="total desc", **{"$filter": "deployment eq '*'"})
        self.assertEqual(list(self.by(body["value"][0], "deployment")), ["green"])
        self.assertEqual(self.fake.violations(), [])

    def test_latency_percentiles_are_the_nearest_rank_of_each_minutes_requests(self):
        self.traffic("blue", 98, latency=10)
        self.traffic("blue", 1, latency=200, time="2026-12-02T05:01:59Z")
        self.traffic("blue", 1, latency=900)
        self.traffic("blue", 10, latency=50.5, time="2026-12-02T05:03:30Z")
        body = self.metrics(BLUE, metricnames="RequestLatency_P99,RequestLatency_P50", aggregation="maximum")
        p99, p50 = body["value"]
        self.assertEqual((p99["name"]["value"], p99["unit"], p99["timeseries"][0]["metadatavalues"]), ("RequestLatency_P99", "MilliSeconds", []))
        self.assertEqual(self.by(p99), {None: [None, {"maximum": 200.0}, None, {"maximum": 50.5}, None]})
        self.assertEqual(self.by(p50), {None: [None, {"maximum": 10.0}, None, {"maximum": 50.5}, None]})
        self.assertEqual(p99["timeseries"][0]["data"][0], {"timeStamp": "2026-12-02T05:00:00Z"})
        # A coarser bucket aggregates the minutes' percentiles; PT1M's count is 1.
        body = self.metrics(BLUE, metricnames="RequestLatency_P99", aggregation="maximum,average,count,minimum,total", interval="PT5M")
        self.assertEqual(self.by(body["value"][0]), {None: [{"maximum": 200.0, "average": 125.25, "count": 2.0, "minimum": 50.5, "total": 250.5}]})
        body = self.metrics(BLUE, metricnames="RequestLatency_P95")  # default aggregation: average
        self.assertEqual(self.by(body["value"][0])[None][1], {"average": 10.0})
        # The endpoint's percentile splits by deployment.
        self.traffic("green", 3, latency=70)
        body = self.metrics("onlineEndpoints/iris", metricnames="RequestLatency_P99", aggregation="maximum", **{"$filter": "deployment eq '*'"})
        self.assertEqual({k: v[1] for k, v in self.by(body["value"][0], "deployment").items()}, {"blue": {"maximum": 200.0}, "green": {"maximum": 70.0}})
        self.assertEqual(self.fake.violations(), [])

    def test_a_wrong_api_version_of_metrics_is_refused_and_recorded(self):
        body = self.metrics(BLUE, status=400, metricnames="RequestsPerMinute", **{"api-version": "2025-12-01"})
        self.assertEqual(body["error"]["code"], "InvalidApiVersionParameter")
        self.assertIn("2024-02-01", body["error"]["message"])
        self.assertEqual(self.metrics(BLUE, status=400, metricnames="RequestsPerMinute", **{"api-version": None})["error"]["code"], "MissingApiVersionParameter")
        (first, second) = self.fake.violations()
        self.assertIn("2025-12-01", first["violations"][0])
        self.assertTrue(first["path"].endswith("/providers/Microsoft.Insights/metrics"))

    def test_an_unknown_metric_is_refused_naming_the_valid_ones(self):
        err = self.metrics(BLUE, status=400, metricnames="RequestsPerMinute,RequestCount")["error"]
        self.assertEqual(err["code"], "BadRequest")
        self.assertIn("Failed to find metric configuration for provider: Microsoft.MachineLearningServices, resource Type: workspaces/onlineEndpoints/deployments, metric: RequestCount", err["message"])
        self.assertIn("Valid metrics: ", err["message"])
        self.assertIn("RequestLatency_P99", err["message"])
        err = self.metrics(BLUE, status=400, metricnames="CpuUtilizationPercentage")["error"]
        self.assertIn("not emulated", err["message"])
        self.assertEqual(self.metrics(BLUE, status=400)["error"]["code"], "BadRequest")  # no metricnames
        self.assertEqual(len(self.fake.violations()), 3)

    def test_a_dimension_the_metric_lacks_is_refused(self):
        err = self.metrics(BLUE, status=400, metricnames="RequestsPerMinute", **{"$filter": "deployment eq 'blue'"})["error"]
        self.assertEqual(err["code"], "BadRequest")
        self.assertIn("deployment", err["message"])
        self.assertIn("envoy_response_code", err["message"])
        err = self.metrics(BLUE, status=400, metricnames="RequestLatency_P99", **{"$filter": "envoy_response_code eq '*'"})["error"]
        self.assertIn("RequestLatency_P99", err["message"])
        # ValidateDimensions=false ignores it, as Azure does.
        self.metrics(BLUE, metricnames="RequestLatency_P99", ValidateDimensions="false", **{"$filter": "envoy_response_code eq '*'"})
        self.assertEqual(self.metrics(BLUE, status=400, metricnames="RequestsPerMinute", **{"$filter": "envoy_response_code ne '200'"})["error"]["code"], "BadRequest")
        self.assertEqual(len(self.fake.violations()), 3)

    def test_bad_aggregation_interval_or_timespan_are_refused(self):
        for params in (
            {"aggregation": "p99"},
            {"interval": "PT7M"},
            {"interval": "5m"},
            {"timespan": "2026-12-02T05:00:00Z"},
            {"timespan": "2026-12-02T05:00:00Z/2026-12-02T05:00:00Z"},
            {"timespan": "yesterday/today"},
        ):
            self.assertEqual(self.metrics(BLUE, status=400, metricnames="RequestsPerMinute", **params)["error"]["code"], "BadRequest", params)
        body = self.metrics(BLUE, metricnames="RequestsPerMinute", interval="PT1H", timespan="2026-12-02T05:10:00.5Z/2026-12-02T07:00:00Z")
        self.assertEqual([p["timeStamp"] for p in body["value"][0]["timeseries"][0]["data"]], ["2026-12-02T05:00:00Z", "2026-12-02T06:00:00Z"])

    def test_metrics_of_an_unknown_resource_are_a_404(self):
        err = self.metrics("onlineEndpoints/iris/deployments/nope", status=404, metricnames="RequestsPerMinute")["error"]
        self.assertEqual(err["code"], "ResourceNotFound")
        self.assertIn("nope", err["message"])
        self.assertEqual(self.metrics("onlineEndpoints/gone", status=404, metricnames="RequestsPerMinute")["error"]["code"], "ResourceNotFound")
        # Resource ids are case-insensitive.
        self.metrics("onlineendpoints/IRIS/deployments/Blue", metricnames="RequestsPerMinute")
        self.assertIn("not emulated", self.metrics("jobs/j1", status=400, metricnames="RequestsPerMinute")["error"]["message"])

    def test_traffic_must_select_exactly_one_deployment(self):
        status, body, _ = self.traffic("deployments/", 3)
        self.assertEqual(status, 400)
        self.assertIn("2 deployments", body["error"])
        self.assertIn(BLUE, body["error"])
        self.assertIn(GREEN, body["error"])
        status, body, _ = self.traffic("nope", 3)
        self.assertEqual(status, 400)
        self.assertIn("no deployment", body["error"])
        self.assertEqual(self.traffic("^onlineEndpoints/iris$", 3)[0], 400)  # the endpoint is no deployment
        self.assertEqual(self.traffic("blue", -1)[0], 400)
        self.assertEqual(self.traffic("blue", 1, status=42)[0], 400)
        self.assertEqual(self.traffic("blue", 1, time="noon")[0], 400)
        self.assertEqual(self.traffic("BLUE", 3)[:2], (201, {"recorded": BLUE, "requests": 3}))

    def test_reset_forgets_the_traffic(self):
        self.traffic("blue", 5)
        body = self.metrics(BLUE, metricnames="RequestsPerMinute", aggregation="total", **{"$filter": "envoy_response_code eq '*'"})
        self.assertEqual(len(body["value"][0]["timeseries"]), 1)
        self.fake.call("POST", "/fake/reset", {}, query=None)
        self.deployments()
        body = self.metrics(BLUE, metricnames="RequestsPerMinute", aggregation="total", **{"$filter": "envoy_response_code eq '*'"})
        self.assertEqual(body["value"][0]["timeseries"], [])
        body = self.metrics(BLUE, metricnames="RequestsPerMinute", aggregation="total")
        self.assertEqual(self.by(body["value"][0]), {None: [None] * 5})


W_MLFLOW = f"/mlflow/v1.0{W}/api/2.0/mlflow"

# A script-mode job: reads its input, writes a model file, logs a metric to MLflow with the
# token the job is given (as mlctl's trainer does).
TRAIN_PY = r"""
import json, os, sys, time, urllib.request
data, out = sys.argv[1], sys.argv[2]
rows = open(data).read().splitlines()
lr = float(os.environ.get("LR", "0"))
open(os.path.join(out, "model.txt"), "w").write(f"rows={len(rows)}\n")
body = {"run_id": os.environ["MLFLOW_RUN_ID"], "metrics": [{"key": "accuracy", "value": 0.5 + lr, "timestamp": int(time.time()*1000), "step": 0}]}
req = urllib.request.Request(os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-batch", data=json.dumps(body).encode(), method="POST",
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]})
urllib.request.urlopen(req).read()
print("trained on", len(rows), "rows; SECRET_ENV is", os.environ.get("FAKE_TEST_SECRET", "absent"))
"""


class Jobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not AZURITE:
            return
        sys.path.insert(0, str(HERE))
        from fake_blob import Account

        cls.account = Account(AZURITE)
        cls.account.create_container("fake-test")
        os.environ["FAKE_TEST_SECRET"] = "leaked"  # the job must not see the fake's environment
        cls.fake = Fake()

    @classmethod
    def tearDownClass(cls):
        if AZURITE:
            cls.fake.stop()

    def upload_code(self, name, files):
        status, up, _ = self.fake.arm("POST", f"codes/{name}/versions/1/startPendingUpload", {"pendingUploadType": "TemporaryBlobReference"})
        self.assertEqual(status, 200, up)
        ref = up["blobReferenceForConsumption"]
        self.assertEqual(ref["credential"]["credentialType"], "SAS")
        base, sas = ref["credential"]["sasUri"].split("?", 1)
        for rel, text in files.items():
            self.account.put(f"{base}/{rel}?{sas}", text.encode())
        status, code, _ = self.fake.arm("PUT", f"codes/{name}/versions/1", {"properties": {"codeUri": ref["blobUri"]}})
        self.assertEqual(status, 201, code)
        return code["id"]

    def data(self, rel, text):
        url = f"{AZURITE}/fake-test/{rel}"
        self.account.put(url, text.encode())
        return url

    @need_azurite
    def test_a_command_job_runs_its_code_on_its_inputs_and_uploads_its_outputs(self):
        code = self.upload_code("train", {"train.py": TRAIN_PY, "lib/helper.txt": "kept"})
        env = env_version(self.fake)
        out = f"{AZURITE}/fake-test/artifacts/job-ok/model/"
        job = command_job(
            env,
            codeId=code,
            command="test -f lib/helper.txt && python3 train.py ${{inputs.train}} ${{outputs.model}}",
            inputs={"train": {"jobInputType": "uri_file", "uri": self.data("objects/train.csv", "a\nb\nc\n")}},
            outputs={"model": {"jobOutputType": "uri_folder", "uri": out, "mode": "ReadWriteMount"}},
            environmentVariables={"LR": "0.25"},
            limits={"jobLimitsType": "Command", "timeout": "PT5M"},
        )
        status, created, _ = self.fake.arm("PUT", "jobs/job-ok", job)
        self.assertEqual(status, 201, created)
        self.assertEqual(created["properties"]["status"], "Queued")
        done = self.fake.wait_job("job-ok")
        self.assertEqual(done["properties"]["status"], "Completed", done["properties"].get("error"))
        self.assertEqual(self.account.get(out + "model.txt"), b"rows=3\n")
        _, run, _ = self.fake.call("GET", f"{W_MLFLOW}/runs/get", query="run_id=job-ok")
        self.assertEqual(run["run"]["info"]["status"], "FINISHED")
        self.assertEqual([(m["key"], m["value"]) for m in run["run"]["data"]["metrics"]], [("accuracy", 0.75)])
        logs = done["properties"]["outputs"]["default"]["uri"]
        log = self.account.get(logs + "user_logs/std_log.txt").decode()
        self.assertIn("trained on 3 rows; SECRET_ENV is absent", log)
        self.assertEqual(self.fake.violations(), [])

    @need_azurite
    def test_a_job_may_name_a_curated_environment_of_the_azureml_registry(self):
        curated = "azureml://registries/azureml/environments/sklearn-1.5/labels/latest"
        status, created, _ = self.fake.arm("PUT", "jobs/job-curated", command_job(curated))
        self.assertEqual(status, 201, created)
        unknown = "azureml://registries/azureml/environments/no-such-env/labels/latest"
        status, body, _ = self.fake.arm("PUT", "jobs/job-unknown-env", command_job(unknown))
        self.assertEqual((status, body["error"]["target"]), (400, "properties.environmentId"))

    @need_azurite
    def test_a_failing_job_fails_with_its_exit_code_and_log_tail(self):
        env = env_version(self.fake)
        logs = f"{AZURITE}/fake-test/artifacts/job-bad/logs/"
        job = command_job(env, command="echo about to fail; exit 3", outputs={"logs": {"jobOutputType": "uri_folder", "uri": logs}})
        status, _, _ = self.fake.arm("PUT", "jobs/job-bad", job)
        self.assertEqual(status, 201)
        done = self.fake.wait_job("job-bad")
        self.assertEqual(done["properties"]["status"], "Failed")
        self.assertIn("status code 3", done["properties"]["error"]["message"])
        self.assertIn("about to fail", done["properties"]["error"]["message"])
        self.assertEqual(self.account.get(logs + "user_logs/std_log.txt"), b"about to fail\n")
        _, run, _ = self.fake.call("GET", f"{W_MLFLOW}/runs/get", query="run_id=job-bad")
        self.assertEqual(run["run"]["info"]["status"], "FAILED")

    @need_azurite
    def test_a_missing_input_blob_fails_the_job_naming_the_input(self):
        env = env_version(self.fake)
        job = command_job(env, command="cat ${{inputs.train}}", inputs={"train": {"jobInputType": "uri_file", "uri": f"{AZURITE}/fake-test/nope.csv"}})
        self.fake.arm("PUT", "jobs/job-noinput", job)
        done = self.fake.wait_job("job-noinput")
        self.assertEqual(done["properties"]["status"], "Failed")
        self.assertIn("input train: no blob at", done["properties"]["error"]["message"])

    @need_azurite
    def test_after_a_reset_a_job_name_can_be_used_again(self):
        env = env_version(self.fake)
        self.fake.arm("PUT", "jobs/job-again", command_job(env, command="sleep 30"))
        self.fake.call("POST", "/fake/reset", {}, query=None)
        env = env_version(self.fake)
        self.assertEqual(self.fake.arm("PUT", "jobs/job-again", command_job(env, command="echo second"))[0], 201)
        self.assertEqual(self.fake.wait_job("job-again")["properties"]["status"], "Completed")

    @need_azurite
    def test_a_cancelled_job_ends_canceled(self):
        env = env_version(self.fake)
        self.fake.arm("PUT", "jobs/job-long", command_job(env, command="sleep 60"))
        deadline = time.monotonic() + 20
        while self.fake.arm("GET", "jobs/job-long")[1]["properties"]["status"] != "Running":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        status, _, headers = self.fake.arm("POST", "jobs/job-long/cancel")
        self.assertEqual(status, 202)
        self.assertIn("Location", headers)
        self.assertEqual(self.fake.wait_job("job-long", timeout=20)["properties"]["status"], "Canceled")

    @need_azurite
    def test_a_cancelled_sweep_stops_its_trials(self):
        env = env_version(self.fake)
        sweep = {
            "properties": {
                "jobType": "Sweep",
                "trial": {"command": "sleep ${{search_space.t}}", "environmentId": env},
                "searchSpace": {"t": ["choice", [[30, 31, 32, 33]]]},
                "samplingAlgorithm": {"samplingAlgorithmType": "Grid"},
                "objective": {"primaryMetric": "accuracy", "goal": "Maximize"},
                "limits": {"jobLimitsType": "Sweep", "maxConcurrentTrials": 1},
            }
        }
        self.assertEqual(self.fake.arm("PUT", "jobs/sweep-cancel", sweep)[0], 201)
        deadline = time.monotonic() + 20
        while self.fake.arm("GET", "jobs/sweep-cancel_0")[0] != 200 or self.fake.arm("GET", "jobs/sweep-cancel_0")[1]["properties"]["status"] != "Running":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        self.assertEqual(self.fake.arm("POST", "jobs/sweep-cancel/cancel")[0], 202)
        self.assertEqual(self.fake.wait_job("sweep-cancel", timeout=30)["properties"]["status"], "Canceled")
        self.assertEqual(self.fake.arm("GET", "jobs/sweep-cancel_0")[1]["properties"]["status"], "Canceled")
        self.assertEqual(self.fake.arm("GET", "jobs/sweep-cancel_1")[0], 404, "no trial starts after the cancel")

    @need_azurite
    def test_a_sweep_runs_its_trials_and_names_the_best(self):
        code = self.upload_code("sweep", {"train.py": TRAIN_PY})
        env = env_version(self.fake)
        out = f"{AZURITE}/fake-test/artifacts/sweep1/model/"
        sweep = {
            "properties": {
                "jobType": "Sweep",
                "experimentName": "iris",
                "trial": {"command": "LR=${{search_space.lr}} python3 train.py ${{inputs.train}} ${{outputs.model}}", "codeId": code, "environmentId": env},
                "inputs": {"train": {"jobInputType": "uri_file", "uri": self.data("objects/sweep.csv", "a\nb\n")}},
                "outputs": {"model": {"jobOutputType": "uri_folder", "uri": out}},
                "searchSpace": {"lr": ["choice", [[0.1, 0.3, 0.2]]]},
                "samplingAlgorithm": {"samplingAlgorithmType": "Grid"},
                "objective": {"primaryMetric": "accuracy", "goal": "Maximize"},
                "limits": {"jobLimitsType": "Sweep", "maxTotalTrials": 3, "maxConcurrentTrials": 2},
            }
        }
        status, body, _ = self.fake.arm("PUT", "jobs/sweep1", sweep)
        self.assertEqual(status, 201, body)
        done = self.fake.wait_job("sweep1", timeout=120)
        self.assertEqual(done["properties"]["status"], "Completed", done["properties"].get("error"))
        self.assertEqual(done["properties"]["properties"]["best_child_run_id"], "sweep1_1")
        _, exp, _ = self.fake.call("GET", f"{W_MLFLOW}/experiments/get-by-name", query="experiment_name=iris")
        search = {"experiment_ids": [exp["experiment"]["experiment_id"]], "filter": "tags.mlflow.parentRunId = 'sweep1'", "max_results": 2}
        _, page, _ = self.fake.call("POST", f"{W_MLFLOW}/runs/search", search, query=None)
        _, rest, _ = self.fake.call("POST", f"{W_MLFLOW}/runs/search", {**search, "page_token": page["next_page_token"]}, query=None)
        runs = {r["info"]["run_id"]: r for r in page["runs"] + rest["runs"]}
        self.assertEqual(sorted(runs), ["sweep1_0", "sweep1_1", "sweep1_2"])
        self.assertEqual(runs["sweep1_1"]["data"]["metrics"][0]["value"], 0.8)
        self.assertEqual(self.account.get(out + "model.txt"), b"rows=2\n")
        self.assertEqual(self.fake.arm("GET", "jobs/sweep1_1")[1]["properties"]["status"], "Completed")
        self.assertEqual(self.fake.violations(), [])


    @need_azurite
    def test_capture_is_written_where_the_data_collector_would_write_it(self):
        folder = f"{AZURITE}/fake-test/capture/iris/"
        status, data, _ = self.fake.arm("PUT", "data/iris-capture/versions/1", {"properties": {"dataType": "uri_folder", "dataUri": folder}})
        self.assertEqual(status, 201, data)
        model = self.fake.arm("PUT", "models/iris/versions/4", {"properties": {"modelUri": f"{AZURITE}/fake-test/m/", "modelType": "custom_model"}})[1]["id"]
        self.fake.arm("PUT", "onlineEndpoints/iris", endpoint())
        collect = {"dataCollectionMode": "Enabled", "dataId": data["id"], "samplingRate": 1.0}
        dep = {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": 1},
            "properties": {
                "endpointComputeType": "Managed",
                "model": model,
                "instanceType": "Standard_DS3_v2",
                "dataCollector": {"collections": {"model_inputs": collect, "model_outputs": collect}},
            },
        }
        status, created, _ = self.fake.arm("PUT", "onlineEndpoints/iris/deployments/blue", dep)
        self.assertEqual(status, 201, created)
        reqs = [{"inputs": [{"sepal_length": 5.1}, {"sepal_length": 6.2}], "outputs": ["setosa", "virginica"]}]
        status, out, _ = self.fake.call("POST", "/fake/capture", {"deployment": created["id"], "requests": reqs, "time": "2026-12-01T10:00:00Z"}, query=None)
        self.assertEqual(status, 201, out)
        self.assertEqual(len(out["written"]), 2)
        self.assertTrue(out["written"][0].startswith(folder + "model_inputs/2026/12/01/10/"))
        inputs = json.loads(self.account.get(out["written"][0]))
        outputs = json.loads(self.account.get(out["written"][1]))
        self.assertEqual(inputs["data"], [{"sepal_length": 5.1}, {"sepal_length": 6.2}])
        self.assertEqual(outputs["data"], ["setosa", "virginica"])
        self.assertEqual(inputs["correlationid"], outputs["correlationid"])
        self.assertEqual((inputs["type"], inputs["modelversion"], inputs["time"]), ("azureml.inference.model_inputs", "4", "2026-12-01T10:00:00Z"))
        self.assertEqual(self.fake.violations(), [])


class Lifecycle(unittest.TestCase):
    def test_sigterm_stops_the_fake_cleanly(self):
        fake = Fake()
        self.assertEqual(fake.call("GET", "/fake/health", query=None)[0], 200)
        fake.proc.send_signal(signal.SIGTERM)
        self.assertEqual(fake.proc.wait(timeout=10), 0)
        fake.proc.stdout.close()
        fake.proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
