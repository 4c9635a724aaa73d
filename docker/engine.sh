#!/usr/bin/env bash
# Which Docker engine the docker-* targets use, and the private engine for machines that have none.
#
#   docker/engine.sh choose [--dry-run]
#       The one place the choice is made (make docker-build/docker-smoke, docker/ci.sh). Prints the
#       export lines to eval; says on stderr which engine it chose:
#         an engine answers `docker info` (Docker Desktop, docker-ce, a DOCKER_HOST you set):
#             QA_DOCKER_ENGINE=system, DOCKER_CLI=$(command -v docker),
#             BASE_IMAGE=python:3.11-slim-bookworm (the official image; pulled by that engine).
#             Nothing is installed or started, and DOCKER_HOST is left as it is.
#         none answers: the private engine below (started if needed):
#             QA_DOCKER_ENGINE=own, DOCKER_HOST=unix://$QA_DOCKER_WORK/docker.sock,
#             DOCKER_CLI=/usr/bin/docker, BASE_IMAGE=local/debian:bookworm
#       QA_DOCKER_ENGINE=auto (default) | system (fail when no engine answers) | own (always private).
#       A BASE_IMAGE already set is kept. --dry-run starts and installs nothing: it prints the lines
#       and says what `choose` would do (docker/build.sh and docker/smoke.sh use it when run alone).
#   docker/engine.sh start    # the private engine: installs docker.io/debootstrap if missing, starts
#                             # dockerd, imports local/debian:bookworm if absent; prints DOCKER_HOST
#   docker/engine.sh stop     # stops the dockerd this script started (by its PID file); an engine
#                             # of your own is never stopped
#   docker/engine.sh status
#
# The private engine (recipe: ../shared/ENVIRONMENT.md) is for machines without one, like the build
# machines here: Debian's docker.io 20.10 client and daemon, BuildKit without buildx, and a base image
# debootstrapped locally because no image registry is reachable. Idempotent: `start` on a running
# engine only prints DOCKER_HOST. Progress goes to stderr so stdout carries only export lines:
#   eval "$(docker/engine.sh choose)"
set -euo pipefail

WORK="${QA_DOCKER_WORK:-/var/tmp/squad-qa-docker}"
SOCK="$WORK/docker.sock"
PIDFILE="$WORK/dockerd.pid"
LOG="$WORK/dockerd.log"
PRIVATE_HOST="unix://$SOCK"
PRIVATE_BASE=local/debian:bookworm
OFFICIAL_BASE=python:3.11-slim-bookworm
# The Debian 20.10 client and daemon (overridable only so that tests can put stubs there).
DOCKER="${QA_PRIVATE_DOCKER_CLI:-/usr/bin/docker}"
DOCKERD="${QA_DOCKERD:-/usr/sbin/dockerd}"

log() { echo "engine: $*" >&2; }

# The PID file is trusted only while it names a live dockerd: after a reboot or a killed session
# the number may belong to another process.
running() {
    [[ -f "$PIDFILE" ]] && [[ "$(cat "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null)" == dockerd ]]
}

# The client of an engine that is not the private one and answers `docker info`; fails otherwise.
user_engine() {
    local cli
    cli="$(command -v docker 2>/dev/null)" || return 1
    # The private engine's socket, exported by an earlier eval, is not an engine of the user's.
    [[ "${DOCKER_HOST:-}" == "$PRIVATE_HOST" ]] && return 1
    if command -v timeout >/dev/null; then
        timeout 30 "$cli" info >/dev/null 2>&1 || return 1
    else
        "$cli" info >/dev/null 2>&1 || return 1
    fi
    echo "$cli"
}

missing_packages() {
    local missing=()
    [[ -x "$DOCKERD" && -x "$DOCKER" ]] || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    echo "${missing[*]}"
}

install_packages() {
    local missing
    read -r -a missing <<<"$(missing_packages)"
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    local sudo=""
    ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

start_daemon() {
    mkdir -p "$WORK"
    if running; then
        log "dockerd already running (pid $(cat "$PIDFILE"))"
        return 0
    fi
    rm -f "$SOCK" "$PIDFILE"
    log "starting dockerd (data root $WORK/docker, log $LOG)"
    # setsid: the daemon outlives this script and does not receive the caller's Ctrl-C.
    setsid "$DOCKERD" --data-root "$WORK/docker" -H "$PRIVATE_HOST" \
        --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.internal.pid" \
        >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local waited=0
    until "$DOCKER" info >/dev/null 2>&1; do
        if ! running; then
            log "dockerd exited; last log lines:"
            tail -20 "$LOG" >&2
            exit 1
        fi
        ((waited++ >= 60)) && { log "dockerd not answering after 60 s"; tail -20 "$LOG" >&2; exit 1; }
        sleep 1
    done
    log "dockerd ready after ${waited}s"
}

# Only the local base is debootstrapped; any other BASE_IMAGE is the engine's to pull.
import_base_image() {
    local image="$1"
    [[ "$image" == local/* ]] || return 0
    if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
        log "base image $image present"
        return 0
    fi
    local rootfs="$WORK/rootfs"
    log "debootstrapping bookworm into $rootfs (about 30 s)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    # Drop the apt lists and caches debootstrap leaves behind; the stages run apt-get update anyway.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | "$DOCKER" import - "$image" >&2
    rm -rf "$rootfs"
    log "imported $image"
}

stop_daemon() {
    if ! running; then
        log "no private dockerd running from $WORK (an engine of your own is never stopped here)"
        rm -f "$PIDFILE"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    log "stopping dockerd pid $pid"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd did not stop in 30 s; sending SIGKILL"
        kill -KILL "$pid"
    fi
    rm -f "$PIDFILE" "$SOCK"
}

start_private() {
    local base="$1"
    export DOCKER_HOST="$PRIVATE_HOST"
    install_packages
    start_daemon
    import_base_image "$base"
}

# What start_private would do, without doing it.
describe_private() {
    local base="$1" missing
    missing="$(missing_packages)"
    [[ -z "$missing" ]] || log "dry run: would install $missing (apt-get, with sudo unless root)"
    if running; then
        log "dry run: private dockerd already running (pid $(cat "$PIDFILE"))"
    else
        log "dry run: would start $DOCKERD on $PRIVATE_HOST (data root $WORK/docker)"
    fi
    [[ "$base" != local/* ]] || log "dry run: would import $base (debootstrap) if the engine lacks it"
}

choose() {
    local dry_run="$1" mode="${QA_DOCKER_ENGINE:-auto}" cli=""
    case "$mode" in
        auto) cli="$(user_engine)" || cli="" ;;
        system)
            cli="$(user_engine)" || {
                log "QA_DOCKER_ENGINE=system, but no Docker engine answers 'docker info'" \
                    "(docker: $(command -v docker || echo none), DOCKER_HOST: ${DOCKER_HOST:-unset})"
                exit 1
            }
            ;;
        own) ;;
        *)
            log "QA_DOCKER_ENGINE must be auto, system or own, not '$mode'"
            exit 2
            ;;
    esac
    if [[ -n "$cli" ]]; then
        local base="${BASE_IMAGE:-$OFFICIAL_BASE}"
        log "using the Docker engine that answers $cli${DOCKER_HOST:+ at $DOCKER_HOST}" \
            "(base image $base); no private engine"
        echo "export QA_DOCKER_ENGINE=system"
        printf 'export DOCKER_CLI=%q\n' "$cli"
        printf 'export BASE_IMAGE=%q\n' "$base"
        return 0
    fi
    local base="${BASE_IMAGE:-$PRIVATE_BASE}"
    if [[ "$mode" == own ]]; then
        log "QA_DOCKER_ENGINE=own: the private engine on $PRIVATE_HOST (base image $base)"
    else
        log "no Docker engine answers 'docker info': the private engine on $PRIVATE_HOST (base image $base)"
    fi
    if [[ "$dry_run" == 1 ]]; then
        describe_private "$base"
    else
        start_private "$base"
    fi
    echo "export QA_DOCKER_ENGINE=own"
    printf 'export DOCKER_HOST=%q\n' "$PRIVATE_HOST"
    printf 'export DOCKER_CLI=%q\n' "$DOCKER"
    printf 'export BASE_IMAGE=%q\n' "$base"
}

case "${1:-}" in
    choose)
        case "${2:-}" in
            "") choose 0 ;;
            --dry-run) choose 1 ;;
            *)
                echo "usage: $0 choose [--dry-run]" >&2
                exit 2
                ;;
        esac
        ;;
    start)
        start_private "${BASE_IMAGE:-$PRIVATE_BASE}"
        echo "export DOCKER_HOST=$PRIVATE_HOST"
        ;;
    stop)
        stop_daemon
        ;;
    status)
        if running; then
            echo "running pid $(cat "$PIDFILE"); export DOCKER_HOST=$PRIVATE_HOST"
        else
            echo "stopped"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 choose [--dry-run]|start|stop|status" >&2
        exit 2
        ;;
esac
