#!/bin/sh
# The mlctl image's entrypoint.
#
# - With arguments, it is the mlctl CLI: `docker run IMAGE apply --target prod` runs
#   `mlctl apply --target prod` (a KFP step or a CI job uses the image this way).
# - With none, it serves the model mounted at $MLCTL_MODEL_DIR on $MLCTL_SERVE_HOST
#   (default 0.0.0.0, the container's own interfaces) and $MLCTL_SERVE_PORT (default 8080):
#   what an Azure ML managed online deployment runs, with liveness and readiness on
#   GET /ping and scoring on POST /invocations. MLCTL_CAPTURE_MDC=true (set by mlctl on a
#   deployment with a data collector) hands the captured requests to Azure's collector.
#
# A registry may mount the model's own folder below the mount path (Azure ML mounts a
# folder model as <mount>/<folder>), so when $MLCTL_MODEL_DIR holds no model.json but exactly
# one of its sub-directories does, that one is served.
set -eu

if [ "$#" -gt 0 ]; then
    exec mlctl "$@"
fi

if [ -z "${MLCTL_MODEL_DIR:-}" ]; then
    echo "mlctl image: nothing to do: give mlctl arguments (e.g. \`docker run IMAGE apply --target T\`), or set MLCTL_MODEL_DIR to a model directory to serve it" >&2
    exit 2
fi

dir=$MLCTL_MODEL_DIR
if [ ! -f "$dir/model.json" ]; then
    found=""
    count=0
    for sub in "$dir"/*/; do
        if [ -f "${sub}model.json" ]; then
            found=${sub%/}
            count=$((count + 1))
        fi
    done
    if [ "$count" -eq 1 ]; then
        dir=$found
    elif [ "$count" -gt 1 ]; then
        echo "mlctl image: MLCTL_MODEL_DIR=$MLCTL_MODEL_DIR holds no model.json, and $count of its sub-directories do: point MLCTL_MODEL_DIR at the one to serve" >&2
        exit 2
    fi
    # None found: `mlctl serve` names the directory and what is missing in it.
fi

exec mlctl serve --model-dir "$dir" --host "${MLCTL_SERVE_HOST:-0.0.0.0}" --port "${MLCTL_SERVE_PORT:-8080}"
