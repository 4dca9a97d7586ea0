"""The contract checker accepts what Azure ML's models accept and names what they refuse.

Run with the venv that has azure-ai-ml: `.ci/azureml-fake.sh test`.
"""

import copy
import unittest

import contract

W = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

COMMAND_JOB = {
    "properties": {
        "jobType": "Command",
        "command": "python train.py --data ${{inputs.train}} --out ${{outputs.model}}",
        "codeId": f"{W}/codes/iris/versions/1",
        "environmentId": f"{W}/environments/mlctl/versions/1",
        "computeId": f"{W}/computes/cpu-cluster",
        "resources": {"instanceType": "Standard_DS3_v2", "instanceCount": 1},
        "inputs": {"train": {"jobInputType": "uri_file", "uri": "https://acct.blob.core.windows.net/ml/objects/ab"}},
        "outputs": {
            "model": {
                "jobOutputType": "uri_folder",
                "uri": "https://acct.blob.core.windows.net/ml/artifacts/j1/model/",
                "mode": "ReadWriteMount",
            }
        },
        "environmentVariables": {"SM_HPS": "{}"},
        "limits": {"jobLimitsType": "Command", "timeout": "PT2H"},
        "experimentName": "iris",
        "displayName": "train",
        "tags": {"mlctl:project": "iris"},
        "properties": {"mlctl.resource": "TrainingJob/train"},
    }
}

SWEEP_JOB = {
    "properties": {
        "jobType": "Sweep",
        "trial": {"command": "mlctl __train-builtin", "codeId": f"{W}/codes/c/versions/1", "environmentId": f"{W}/environments/e/versions/1"},
        "searchSpace": {"lr": ["uniform", [0.01, 0.1]], "depth": ["choice", [[2, 3, 4]]]},
        "samplingAlgorithm": {"samplingAlgorithmType": "Random", "seed": 7},
        "objective": {"primaryMetric": "accuracy", "goal": "Maximize"},
        "limits": {"jobLimitsType": "Sweep", "maxTotalTrials": 4, "maxConcurrentTrials": 2},
        "earlyTermination": {"policyType": "Bandit", "slackFactor": 0.1, "evaluationInterval": 1},
    }
}

MANAGED_DEPLOYMENT = {
    "location": "westeurope",
    "sku": {"name": "Default", "capacity": 1},
    "tags": {"mlctl:project": "iris"},
    "properties": {
        "endpointComputeType": "Managed",
        "model": f"{W}/models/iris/versions/3",
        "instanceType": "Standard_DS3_v2",
        "scaleSettings": {"scaleType": "Default"},
        "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1},
        "dataCollector": {
            "collections": {
                "model_inputs": {"dataCollectionMode": "Enabled", "dataId": f"{W}/data/capture/versions/1", "samplingRate": 0.5},
            }
        },
    },
}


def paths(violations):
    return [v.path for v in violations]


class CommandJobs(unittest.TestCase):
    def test_a_valid_command_job_passes(self):
        self.assertEqual(contract.check("JobBase", COMMAND_JOB), [])

    def test_a_missing_command_fails(self):
        body = copy.deepcopy(COMMAND_JOB)
        del body["properties"]["command"]
        v = contract.check("JobBase", body)
        self.assertEqual(paths(v), ["$.properties.command"])
        self.assertIn("missing required field of CommandJob", v[0].message)

    def test_an_unknown_field_fails(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["retries"] = 3
        v = contract.check("JobBase", body)
        self.assertEqual(paths(v), ["$.properties.retries"])
        self.assertIn("unknown field", v[0].message)

    def test_the_python_attribute_name_is_not_the_wire_name(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["code_id"] = body["properties"].pop("codeId")
        v = contract.check("JobBase", body)
        self.assertEqual(paths(v), ["$.properties.code_id"])
        self.assertIn("'codeId'", v[0].message)

    def test_a_read_only_field_sent_by_the_client_fails(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["status"] = "Running"
        self.assertEqual(paths(contract.check("JobBase", body)), ["$.properties.status"])

    def test_nested_discriminators_are_followed(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["inputs"]["train"]["jobInputType"] = "uri_fil"
        body["properties"]["outputs"]["model"]["path"] = "x"
        self.assertEqual(
            paths(contract.check("JobBase", body)),
            ["$.properties.inputs['train'].jobInputType", "$.properties.outputs['model'].path"],
        )

    def test_an_unknown_job_type_fails_and_names_the_known_ones(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["jobType"] = "command"
        (v,) = contract.check("JobBase", body)
        self.assertEqual(v.path, "$.properties.jobType")
        self.assertIn("case-sensitive", v.message)
        self.assertIn("Command", v.message)

    def test_enums_are_case_insensitive_but_checked(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["outputs"]["model"]["mode"] = "readwritemount"
        self.assertEqual(contract.check("JobBase", body), [])
        body["properties"]["outputs"]["model"]["mode"] = "Sideways"
        self.assertEqual(paths(contract.check("JobBase", body)), ["$.properties.outputs['model'].mode"])

    def test_types_are_checked(self):
        body = copy.deepcopy(COMMAND_JOB)
        body["properties"]["resources"]["instanceCount"] = "1"
        body["properties"]["limits"]["timeout"] = "2h"
        body["properties"]["tags"]["n"] = 3
        self.assertEqual(
            paths(contract.check("JobBase", body)),
            ["$.properties.resources.instanceCount", "$.properties.limits.timeout", "$.properties.tags['n']"],
        )


class SweepJobs(unittest.TestCase):
    def test_a_valid_sweep_passes(self):
        self.assertEqual(contract.check("JobBase", SWEEP_JOB), [])

    def test_a_bad_sampling_algorithm_type_fails(self):
        body = copy.deepcopy(SWEEP_JOB)
        body["properties"]["samplingAlgorithm"]["samplingAlgorithmType"] = "Sobol"
        (v,) = contract.check("JobBase", body)
        self.assertEqual(v.path, "$.properties.samplingAlgorithm.samplingAlgorithmType")
        self.assertIn("Bayesian, Grid, Random", v.message)

    def test_the_trial_is_checked_too(self):
        body = copy.deepcopy(SWEEP_JOB)
        del body["properties"]["trial"]["command"]
        self.assertEqual(paths(contract.check("JobBase", body)), ["$.properties.trial.command"])


class Deployments(unittest.TestCase):
    def test_a_managed_online_deployment_passes(self):
        self.assertEqual(contract.check("OnlineDeployment", MANAGED_DEPLOYMENT), [])

    def test_a_kubernetes_field_on_a_managed_deployment_fails(self):
        body = copy.deepcopy(MANAGED_DEPLOYMENT)
        body["properties"]["containerResourceRequirements"] = {"containerResourceRequests": {"cpu": "1"}}
        v = contract.check("OnlineDeployment", body)
        self.assertEqual(paths(v), ["$.properties.containerResourceRequirements"])
        self.assertIn("ManagedOnlineDeployment", v[0].message)

    def test_a_tracked_resource_needs_its_location(self):
        body = copy.deepcopy(MANAGED_DEPLOYMENT)
        del body["location"]
        self.assertEqual(paths(contract.check("OnlineDeployment", body)), ["$.location"])

    def test_an_endpoint_with_identity_and_traffic_passes(self):
        body = {
            "location": "westeurope",
            "identity": {"type": "SystemAssigned"},
            "tags": {"mlctl:project": "iris"},
            "properties": {"authMode": "Key", "traffic": {"blue": 90, "green": 10}, "mirrorTraffic": {}},
        }
        self.assertEqual(contract.check("OnlineEndpoint", body), [])
        body["properties"]["traffic"]["blue"] = "90"
        self.assertEqual(paths(contract.check("OnlineEndpoint", body)), ["$.properties.traffic['blue']"])


class Routes(unittest.TestCase):
    def test_each_request_maps_to_its_model(self):
        cases = {
            ("PUT", "/data/iris"): "DataContainer",
            ("PUT", "/data/iris/versions/3"): "DataVersionBase",
            ("POST", "/codes/c/versions/1/startPendingUpload"): "PendingUploadRequestDto",
            ("PUT", "/codes/c/versions/1"): "CodeVersion",
            ("PUT", "/environments/e/versions/1"): "EnvironmentVersion",
            ("PUT", "/jobs/j1"): "JobBase",
            ("PUT", "/models/m/versions/2"): "ModelVersion",
            ("PUT", "/onlineEndpoints/e/deployments/blue"): "OnlineDeployment",
            ("POST", "/jobs/j1/cancel"): None,
            ("GET", "/jobs/j1"): None,
        }
        for (method, path), want in cases.items():
            self.assertEqual(contract.route(method, path), want, f"{method} {path}")

    def test_asset_bodies_from_the_design_pass(self):
        ok = {
            "DataContainer": {"properties": {"dataType": "uri_file", "tags": {}, "description": "d"}},
            "DataVersionBase": {"properties": {"dataType": "uri_file", "dataUri": "https://a/b", "tags": {}}},
            "CodeVersion": {"properties": {"codeUri": "https://a/b", "tags": {}}},
            "PendingUploadRequestDto": {"pendingUploadType": "TemporaryBlobReference"},
            "EnvironmentVersion": {"properties": {"image": "ghcr.io/x/mlctl:1", "tags": {}}},
            "ModelVersion": {
                "properties": {
                    "modelUri": "https://a/artifacts/j/model/",
                    "modelType": "custom_model",
                    "stage": "Staging",
                    "properties": {"mlctl.approval": "approved"},
                }
            },
        }
        for name, body in ok.items():
            self.assertEqual(contract.check(name, body), [], name)

    def test_a_data_version_without_its_type_is_refused(self):
        (v,) = contract.check("DataVersionBase", {"properties": {"dataUri": "https://a/b"}})
        self.assertEqual(v.path, "$.properties.dataType")
        self.assertIn("uri_file", v.message)


class EveryModel(unittest.TestCase):
    def test_every_annotation_of_every_model_is_understood(self):
        # An empty object against every model exercises the required-field logic of all 490
        # classes; a type the checker does not know raises instead of passing silently.
        for name in dir(contract.MODELS):
            cls = getattr(contract.MODELS, name)
            if isinstance(cls, type) and issubclass(cls, contract.Model):
                contract.fields(cls)


if __name__ == "__main__":
    unittest.main()
