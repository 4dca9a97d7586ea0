"""Checks a pipeline written by `mlctl export --format kfp` with Kubeflow's own code.

    python check.py PIPELINE_YAML

1. `kfp.components.load_component_from_file` loads it (as the SDK loads any compiled
   pipeline), and it can be used as a step of another pipeline that `kfp.compiler` compiles;
2. it parses strictly into `pipeline_spec_pb2.PipelineSpec` from `kfp-pipeline-spec`
   (`ignore_unknown_fields=False`: a field the IR does not define is an error).

Prints one JSON line: the pipeline's name, its tasks with their dependencies and caching.
"""
import json
import sys
import tempfile

import yaml
from google.protobuf import json_format
from kfp import compiler, components, dsl
from kfp.pipeline_spec import pipeline_spec_pb2


def main():
    path = sys.argv[1]
    component = components.load_component_from_file(path)

    @dsl.pipeline(name="wraps-mlctl")
    def outer():
        component()

    with tempfile.NamedTemporaryFile(suffix=".yaml") as out:
        compiler.Compiler().compile(outer, out.name)

    with open(path) as f:
        document = yaml.safe_load(f)
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(document, spec, ignore_unknown_fields=False)
    assert spec.schema_version == "2.1.0", spec.schema_version
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    tasks = {}
    for name, task in spec.root.dag.tasks.items():
        executor = spec.components[task.component_ref.name].executor_label
        container = executors[executor]["container"]
        tasks[name] = {
            "resource": task.task_info.name,
            "dependentTasks": list(task.dependent_tasks),
            "enableCache": task.caching_options.enable_cache,
            "cacheKey": task.caching_options.cache_key,
            "image": container["image"],
            "args": list(container["args"]),
        }
    print(json.dumps({"name": spec.pipeline_info.name, "component": component.name, "tasks": tasks}))


if __name__ == "__main__":
    main()
