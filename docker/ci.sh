#!/usr/bin/env bash
# The image's CI step (.ci/run and .github/workflows/ci.yml call it):
#   1. lint: hadolint docker/Dockerfile, actionlint the workflow, schema-check deploy/ (docker/lint.sh)
#   2. pick the engine with docker/engine.sh choose, as make docker-build does. QA_DOCKER_ENGINE:
#        own (default here: the build machines reach no image registry): the private engine (installs
#            docker.io + debootstrap if missing, imports local/debian:bookworm)
#        system (GitHub): the host's engine and python:3.11-slim-bookworm; fails if none answers
#        auto: the host's engine when one answers, else the private one
#   3. build the image with MODEL baked in (docker/build.sh)
#   4. smoke-test it (docker/smoke.sh)
#   5. stop the private engine, pass or fail (never the host's)
#
# MODEL defaults to the shipped models/minilm-l6-squad; when that directory is absent (it is
# trained separately), a tiny random model is made so the packaging is still tested end to end,
# and the answer is then only checked to be a span of the context. For the shipped model the
# smoke test also requires the answer EXPECT (default 1894; EXPECT= to skip).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
SHIPPED=models/minilm-l6-squad
MODEL="${MODEL:-$SHIPPED}"
ENGINE="${QA_DOCKER_ENGINE:-own}"
export HF_HUB_OFFLINE=1 IMAGE="${IMAGE:-squad-qa:ci}"

PYTHON="$PYTHON" docker/lint.sh

if [[ ! -f "$MODEL/config.json" ]]; then
    if [[ "$MODEL" != "$SHIPPED" ]]; then
        echo "ci: error: $MODEL is not a model directory" >&2
        exit 1
    fi
    echo "ci: $SHIPPED is not in this checkout; packaging is tested with a tiny random model instead"
    MODEL=outputs/tiny-model
    rm -rf "$MODEL"
    "$PYTHON" -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \
from helpers import make_tiny_model; make_tiny_model(Path('$MODEL'), 'bert')"
    export EXPECT=""
elif [[ "$(realpath -m "$MODEL")" == "$(realpath -m "$SHIPPED")" ]]; then
    export EXPECT="${EXPECT-1894}"
fi

# stop acts only on the private dockerd's PID file. Until the choice is made QA_DOCKER_ENGINE holds
# the request, then what was chosen (own or system).
export QA_DOCKER_ENGINE="$ENGINE"
trap '[[ "$QA_DOCKER_ENGINE" == system ]] || docker/engine.sh stop' EXIT
engine="$(docker/engine.sh choose)"
eval "$engine"

MODEL="$MODEL" docker/build.sh
docker/smoke.sh
# A free host tells the container its port: Cloud Run sets PORT=8080.
CONTAINER_PORT=8080 docker/smoke.sh
