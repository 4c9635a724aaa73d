#!/usr/bin/env bash
# Smoke-test the serving image (make docker-smoke [IMAGE=tag] [EXPECT=text]).
#
# Runs the container on loopback, waits for /readyz, asks one question, checks the answer is the
# span context[start:end] (and equals EXPECT when given, for a trained model), checks the server
# runs as a non-root user and that the image has no torch/transformers, reports image size,
# time to ready and memory, then removes the container.
#   IMAGE          default squad-qa:local
#   SMOKE_PORT     host port on 127.0.0.1 (default: a free one)
#   CONTAINER_PORT the $PORT the container is told to listen on, as a host sets it (default: unset,
#                  the image's 8000; Cloud Run sets 8080, Render 10000)
#   READY_TIMEOUT  seconds to wait for /readyz (default 180)
#   EXPECT         exact answer text to require (default: any span of the context)
#   DOCKER_CLI, DOCKER_HOST  from `eval "$(docker/engine.sh choose)"` (make docker-smoke does it);
#                  run alone, this script asks `docker/engine.sh choose --dry-run`
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${DOCKER_CLI:-}" ]]; then
    choice="$(docker/engine.sh choose --dry-run)"
    eval "$choice"
fi

IMAGE="${IMAGE:-squad-qa:local}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
EXPECT="${EXPECT:-}"
DOCKER="$DOCKER_CLI"
PY="$(command -v python3)"
# Portable beyond GNU date (Docker Desktop on macOS).
now_ms() {
    local t
    t="$(date +%s%3N)"
    [[ "$t" =~ ^[0-9]+$ ]] && echo "$t" || echo $(($(date +%s) * 1000))
}

"$DOCKER" image inspect "$IMAGE" >/dev/null \
    || { echo "error: no image $IMAGE; run make docker-build" >&2; exit 1; }
port="${SMOKE_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
name="qa-smoke-$$"
url="http://127.0.0.1:$port"

fail() {
    echo "smoke: FAIL: $*" >&2
    echo "--- container logs (last 40 lines) ---" >&2
    "$DOCKER" logs --tail 40 "$name" >&2 2>&1 || true
    exit 1
}
cleanup() { "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

began_ms=$(now_ms)
port_args=(-p "127.0.0.1:$port:8000")
[[ -n "${CONTAINER_PORT:-}" ]] && port_args=(-e "PORT=$CONTAINER_PORT" -p "127.0.0.1:$port:$CONTAINER_PORT")
"$DOCKER" run -d --name "$name" "${port_args[@]}" "$IMAGE" >/dev/null
echo "smoke: started $name from $IMAGE on $url (container port ${CONTAINER_PORT:-8000})"

# The first request right after `docker run` can get an empty reply, so poll until 200.
until "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/readyz" 2>/dev/null; do
    [[ "$("$DOCKER" inspect -f '{{.State.Running}}' "$name")" == true ]] \
        || fail "container exited with status $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$name") before ready"
    (( $(now_ms) - began_ms < READY_TIMEOUT * 1000 )) || fail "not ready after ${READY_TIMEOUT}s"
    sleep 0.25
done
ready_ms=$(( $(now_ms) - began_ms ))

# A question whose context is written here (no dataset text in the repo).
"$PY" - "$url" "$EXPECT" <<'EOF' || fail "answer check"
import json
import sys
import urllib.request

url, expect = sys.argv[1], sys.argv[2]
ready = json.load(urllib.request.urlopen(f"{url}/readyz", timeout=5))
print(f"smoke: /readyz {ready}")
context = (
    "The Tower Bridge in London was opened in 1894. It crosses the River Thames close to the "
    "Tower of London and was designed by the architect Horace Jones."
)
question = "When was the Tower Bridge opened?"
request = urllib.request.Request(
    f"{url}/v1/answer",
    data=json.dumps({"question": question, "context": context}).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=30) as response:
    body = json.load(response)
print(f"smoke: Q: {question}")
print(f"smoke: A: {body['answer']!r} [{body['start']}:{body['end']}] score {body['score']:.4f} "
      f"(backend {body.get('backend')}, model {body.get('model')}, {body.get('elapsed_ms')} ms)")
start, end = body["start"], body["end"]
assert isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(context), (start, end)
assert body["answer"] and context[start:end] == body["answer"], "answer is not context[start:end]"
if expect:
    assert body["answer"] == expect, f"expected {expect!r}"
EOF

uid_exec="$("$DOCKER" exec "$name" id -u)"
# shellcheck disable=SC2016  # $2 is awk's field, not a shell expansion
uid_pid1="$("$DOCKER" exec "$name" awk '/^Uid:/ {print $2}' /proc/1/status)"
[[ "$uid_exec" != 0 && "$uid_pid1" != 0 ]] || fail "runs as root (exec uid $uid_exec, pid 1 uid $uid_pid1)"
echo "smoke: non-root: exec uid $uid_exec, gunicorn (pid 1) uid $uid_pid1"

# The runtime stage must carry no training stack (the exporter stage has it).
"$DOCKER" exec "$name" python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("torch", "transformers")))' \
    || fail "torch or transformers is installed in the runtime image"
echo "smoke: no torch/transformers in the runtime image"

health="$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name")"
memory="$("$DOCKER" stats --no-stream --format '{{.MemUsage}}' "$name")"
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
echo "smoke: image $IMAGE $((size / 1000000)) MB; ready in ${ready_ms} ms; memory ${memory}; health ${health:-none}"
echo "smoke: PASS"
