#!/usr/bin/env bash
# Start or stop a private Docker engine under a scratch directory (recipe: ../shared/ENVIRONMENT.md).
#
#   docker/engine.sh start   # installs docker.io/debootstrap if missing, starts dockerd, imports
#                            # local/debian:bookworm if absent; prints the DOCKER_HOST line to eval
#   docker/engine.sh stop    # stops the dockerd this script started (by its PID file)
#   docker/engine.sh status
#
# Idempotent: `start` on a running engine only prints DOCKER_HOST. Usage in a shell:
#   eval "$(docker/engine.sh start)"
# Progress goes to stderr so stdout carries only the export line.
set -euo pipefail

WORK="${QA_DOCKER_WORK:-/var/tmp/squad-qa-docker}"
SOCK="$WORK/docker.sock"
PIDFILE="$WORK/dockerd.pid"
LOG="$WORK/dockerd.log"
BASE_IMAGE="${BASE_IMAGE:-local/debian:bookworm}"
DOCKER=/usr/bin/docker   # the Debian 20.10 client: BuildKit without buildx
export DOCKER_HOST="unix://$SOCK"

log() { echo "engine: $*" >&2; }

# The PID file is trusted only while it names a live dockerd: after a reboot or a killed session
# the number may belong to another process.
running() {
    [[ -f "$PIDFILE" ]] && [[ "$(cat "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null)" == dockerd ]]
}

install_packages() {
    local missing=()
    [[ -x /usr/sbin/dockerd && -x "$DOCKER" ]] || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
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
    setsid /usr/sbin/dockerd --data-root "$WORK/docker" -H "$DOCKER_HOST" \
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

import_base_image() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"
        return 0
    fi
    local rootfs="$WORK/rootfs"
    log "debootstrapping bookworm into $rootfs (about 30 s)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
    # Drop the apt lists and caches debootstrap leaves behind; the stages run apt-get update anyway.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE_IMAGE" >&2
    rm -rf "$rootfs"
    log "imported $BASE_IMAGE"
}

stop_daemon() {
    if ! running; then
        log "no dockerd running from $WORK"
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

case "${1:-}" in
    start)
        install_packages
        start_daemon
        import_base_image
        echo "export DOCKER_HOST=$DOCKER_HOST"
        ;;
    stop)
        stop_daemon
        ;;
    status)
        if running; then
            echo "running pid $(cat "$PIDFILE"); export DOCKER_HOST=$DOCKER_HOST"
        else
            echo "stopped"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
