#!/usr/bin/env bash
# Build the serving image with BuildKit (make docker-build [MODEL=dir] [IMAGE=tag]).
#
#   MODEL       model directory to bake in (default models/minilm-l6-squad); an ONNX export in
#               it is reused, otherwise the exporter stage makes one
#   IMAGE       tag (default squad-qa:local)
#   ONNX_GRAPHS auto (default: the graph the server's "auto" backend picks: int8 once its gate
#               passed, else fp32) | int8 | fp32 | both
#   PLATFORM    optional docker build --platform, e.g. linux/amd64 for Cloud Run from an arm64 Mac
#   BASE_IMAGE, DOCKER_CLI, DOCKER_HOST
#               from `eval "$(docker/engine.sh choose)"` (make docker-build does it): with an engine of
#               your own, its client and python:3.11-slim-bookworm; without one, the private engine's
#               /usr/bin/docker and local/debian:bookworm. Run alone, this script asks
#               `docker/engine.sh choose --dry-run`, and starts nothing itself.
#
# Prints the build time and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."

# The engine's choice (docker/engine.sh choose) when the caller made none.
if [[ -z "${DOCKER_CLI:-}" ]]; then
    choice="$(docker/engine.sh choose --dry-run)"
    eval "$choice"
fi
MODEL="${MODEL:-models/minilm-l6-squad}"
IMAGE="${IMAGE:-squad-qa:local}"
BASE_IMAGE="${BASE_IMAGE:?BASE_IMAGE is set by docker/engine.sh choose}"
ONNX_GRAPHS="${ONNX_GRAPHS:-auto}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
# The private engine's is Debian's 20.10 client (BuildKit without buildx, ENVIRONMENT.md); with an
# engine of your own, the docker on your PATH.
DOCKER="$DOCKER_CLI"
STAGE=.tmp/docker-model  # allowed by .dockerignore; outputs/ is not
SHIPPED=models/minilm-l6-squad

# Portable beyond GNU (Docker Desktop on macOS: bash 3.2, BSD date and realpath).
abs_dir() { (cd "$1" 2>/dev/null && pwd -P) || echo "$1"; }
now_ms() {
    local t
    t="$(date +%s%3N)"
    [[ "$t" =~ ^[0-9]+$ ]] && echo "$t" || echo $(($(date +%s) * 1000))
}

[[ -x "$DOCKER" ]] || { echo "error: no Docker client at $DOCKER" >&2; exit 1; }
"$DOCKER" info >/dev/null 2>&1 \
    || { echo "error: no Docker engine at ${DOCKER_HOST:-default}; run make docker-build (or eval \"\$(docker/engine.sh choose)\")" >&2; exit 1; }
[[ -f "$MODEL/config.json" ]] || { echo "error: $MODEL is not a model directory (no config.json)" >&2; exit 1; }

# Any model other than the shipped one is staged (hard links, no copy) into the one folder the
# context admits, leaving training leftovers out so they never travel to the engine.
model_arg="$MODEL"
if [[ "$(abs_dir "$MODEL")" != "$(abs_dir "$SHIPPED")" ]]; then
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    shopt -s dotglob nullglob
    for entry in "$MODEL"/*; do
        case "$(basename "$entry")" in
            checkpoint-* | runs | optimizer.pt | scheduler.pt | rng_state*.pth | training_args.bin | .export-*) continue ;;
        esac
        cp -al "$entry" "$STAGE/" 2>/dev/null || cp -a "$entry" "$STAGE/"
    done
    shopt -u dotglob nullglob
    model_arg="$STAGE"
fi

# The local CPU torch wheel for the exporter stage: pip's find-links folder on this machine.
find_links="$(pip config get global.find-links 2>/dev/null || true)"
for dir in $find_links /opt/wheels; do
    for wheel in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do
        [[ -f "$wheel" ]] || continue
        [[ -f "docker/wheels/$(basename "$wheel")" ]] \
            || ln "$wheel" docker/wheels/ 2>/dev/null || cp "$wheel" docker/wheels/
        break 2
    done
done
if ! ls docker/wheels/torch-*.whl >/dev/null 2>&1; then
    echo "build: no local torch wheel; the exporter installs torch from the PyTorch CPU index" >&2
fi

# "auto" serves int8 only once its gate passed; a forced graph is named so the server loads it.
case "$ONNX_GRAPHS" in
    int8) backend=onnx-int8 ;;
    fp32) backend=onnx-fp32 ;;
    *) backend=auto ;;
esac

secret_args=()
[[ -s "$CA_BUNDLE" ]] && secret_args=(--secret "id=pip_ca,src=$CA_BUNDLE")
platform_args=()
[[ -n "${PLATFORM:-}" ]] && platform_args=(--platform "$PLATFORM")

echo "build: $IMAGE from $BASE_IMAGE with model $MODEL (onnx $ONNX_GRAPHS; docker $DOCKER)" >&2
began_ms=$(now_ms)
DOCKER_BUILDKIT=1 "$DOCKER" build \
    ${secret_args[@]+"${secret_args[@]}"} \
    ${platform_args[@]+"${platform_args[@]}"} \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "MODEL_DIR=$model_arg" \
    --build-arg "MODEL_NAME=${MODEL_NAME:-$(basename "$(abs_dir "$MODEL")")}" \
    --build-arg "ONNX_GRAPHS=$ONNX_GRAPHS" \
    --build-arg "QA_BACKEND=$backend" \
    --progress "${PROGRESS:-plain}" \
    -t "$IMAGE" -f docker/Dockerfile .
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
elapsed_ms=$(($(now_ms) - began_ms))
printf 'build: %s built in %d.%01d s; image size %d MB\n' "$IMAGE" $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100)) \
    $((size / 1000000))
