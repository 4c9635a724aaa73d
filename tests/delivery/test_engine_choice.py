"""docker/engine.sh choose: an engine of the user's when one answers, the private engine otherwise.

Stub executables stand in for docker, dockerd, apt-get, sudo, debootstrap and systemctl; each records
its call. Nothing here installs packages or starts a daemon: the stubs for those exit 97.
"""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "docker" / "engine.sh"
FORBIDDEN = ("apt-get", "sudo", "debootstrap", "systemctl", "dockerd")

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("setsid") and shutil.which("make")),
    reason="needs bash, setsid and make",
)

DOCKER_STUB = """#!/bin/sh
echo "docker $*" >> "$STUB_LOG"
case "$1" in
    info) exit "${STUB_DOCKER_INFO_RC:-0}" ;;
    image) [ "$2" = inspect ] && echo 123000000 ;;
esac
exit 0
"""

FORBIDDEN_STUB = """#!/bin/sh
echo "{name} $*" >> "$STUB_LOG"
echo "stub {name}: must not be called here" >&2
exit 97
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER_STUB)
    for name in FORBIDDEN:
        (bin_dir / name).write_text(FORBIDDEN_STUB.format(name=name))
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    work = tmp_path / "work"
    return bin_dir, log, work


def environment(stubs, *, info_rc: int, **extra: str) -> dict[str, str]:
    bin_dir, log, work = stubs
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DOCKER_HOST", "DOCKER_CLI", "BASE_IMAGE", "QA_DOCKER_ENGINE", "DOCKER_CONTEXT", "MAKEFLAGS")
    }
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        STUB_LOG=str(log),
        STUB_DOCKER_INFO_RC=str(info_rc),
        QA_DOCKER_WORK=str(work),
        # The private engine's client and daemon are the stubs too, so nothing real is reached.
        QA_PRIVATE_DOCKER_CLI=str(bin_dir / "docker"),
        QA_DOCKERD=str(bin_dir / "dockerd"),
    )
    env.update(extra)
    return env


def engine(stubs, *args: str, info_rc: int, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ENGINE), *args], env=environment(stubs, info_rc=info_rc, **extra),
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def exports(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        assert line.startswith("export "), f"not an export line: {line!r}"
        key, _, value = line.removeprefix("export ").partition("=")
        found[key] = value
    return found


def calls(stubs) -> list[str]:
    return stubs[1].read_text().splitlines()


def forbidden_calls(stubs) -> list[str]:
    return [line for line in calls(stubs) if line.split()[0] in FORBIDDEN]


def test_an_answering_engine_is_used_with_the_official_base(stubs):
    result = engine(stubs, "choose", info_rc=0)
    assert result.returncode == 0, result.stderr
    assert exports(result.stdout) == {
        "QA_DOCKER_ENGINE": "system",
        "DOCKER_CLI": str(stubs[0] / "docker"),
        "BASE_IMAGE": "python:3.11-slim-bookworm",
    }
    assert calls(stubs) == ["docker info"]
    assert not stubs[2].exists(), "the private engine's work folder was made"
    assert "using the Docker engine" in result.stderr and "no private engine" in result.stderr


def test_the_users_docker_host_and_base_image_are_kept(stubs):
    result = engine(stubs, "choose", info_rc=0, DOCKER_HOST="tcp://build-box:2376", BASE_IMAGE="python:3.11-slim")
    assert result.returncode == 0, result.stderr
    found = exports(result.stdout)
    assert "DOCKER_HOST" not in found  # the user's stays as it is
    assert found["BASE_IMAGE"] == "python:3.11-slim"
    assert "tcp://build-box:2376" in result.stderr
    assert forbidden_calls(stubs) == []


def test_without_an_engine_the_dry_run_names_the_private_path(stubs):
    result = engine(stubs, "choose", "--dry-run", info_rc=1)
    assert result.returncode == 0, result.stderr
    work = stubs[2]
    assert exports(result.stdout) == {
        "QA_DOCKER_ENGINE": "own",
        "DOCKER_HOST": f"unix://{work}/docker.sock",
        "DOCKER_CLI": str(stubs[0] / "docker"),
        "BASE_IMAGE": "local/debian:bookworm",
    }
    assert f"would start {stubs[0] / 'dockerd'}" in result.stderr
    assert forbidden_calls(stubs) == []
    assert not work.exists()


def test_without_an_engine_choose_starts_the_private_dockerd(stubs):
    # The stub dockerd records its arguments and exits, so choose reports that it died.
    result = engine(stubs, "choose", info_rc=1)
    assert result.returncode == 1
    assert result.stdout == ""  # nothing to eval when the engine did not come up
    work = stubs[2]
    started = [line for line in calls(stubs) if line.startswith("dockerd ")]
    assert started == [
        f"dockerd --data-root {work}/docker -H unix://{work}/docker.sock --exec-root {work}/exec "
        f"--pidfile {work}/dockerd.internal.pid"
    ]
    # docker.io and debootstrap count as installed (the stubs), so apt-get is never reached.
    assert [line for line in forbidden_calls(stubs) if not line.startswith("dockerd ")] == []
    assert "starting dockerd" in result.stderr


def test_own_takes_the_private_engine_even_when_one_answers(stubs):
    result = engine(stubs, "choose", "--dry-run", info_rc=0, QA_DOCKER_ENGINE="own")
    assert result.returncode == 0, result.stderr
    assert exports(result.stdout)["QA_DOCKER_ENGINE"] == "own"
    assert calls(stubs) == []  # not even asked


def test_the_private_socket_in_docker_host_is_not_an_engine_of_the_users(stubs):
    socket = f"unix://{stubs[2]}/docker.sock"
    result = engine(stubs, "choose", "--dry-run", info_rc=0, DOCKER_HOST=socket)
    assert result.returncode == 0, result.stderr
    found = exports(result.stdout)
    assert (found["QA_DOCKER_ENGINE"], found["DOCKER_HOST"], found["BASE_IMAGE"]) == (
        "own", socket, "local/debian:bookworm",
    )


def test_system_fails_when_no_engine_answers(stubs):
    result = engine(stubs, "choose", info_rc=1, QA_DOCKER_ENGINE="system")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "QA_DOCKER_ENGINE=system, but no Docker engine answers" in result.stderr
    assert forbidden_calls(stubs) == []


def test_an_unknown_request_is_refused(stubs):
    result = engine(stubs, "choose", info_rc=0, QA_DOCKER_ENGINE="podman")
    assert result.returncode == 2
    assert "auto, system or own" in result.stderr


def test_stop_never_touches_an_engine_of_the_users(stubs):
    # A PID file naming a live process that is not dockerd (a reused number) must not be signalled.
    stubs[2].mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (stubs[2] / "dockerd.pid").write_text(f"{bystander.pid}\n")
        result = engine(stubs, "stop", info_rc=0)
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None, "stop signalled a process that is not its dockerd"
        assert calls(stubs) == []
        assert "never stopped" in result.stderr
    finally:
        bystander.send_signal(signal.SIGTERM)
        bystander.wait(timeout=10)


def make(stubs, target: str, *, info_rc: int, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", target, *(f"{k}={v}" for k, v in variables.items())],
        env=environment(stubs, info_rc=info_rc), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_make_docker_build_builds_on_the_users_engine(stubs):
    if not (ROOT / "models/minilm-l6-squad/config.json").exists():
        pytest.skip("the shipped model is not in this checkout")
    result = make(stubs, "docker-build", info_rc=0, IMAGE="squad-qa:stubbed", MODEL="models/minilm-l6-squad")
    assert result.returncode == 0, result.stderr
    builds = [line for line in calls(stubs) if line.startswith("docker build ")]
    assert len(builds) == 1, calls(stubs)
    assert "--build-arg BASE_IMAGE=python:3.11-slim-bookworm" in builds[0]
    assert builds[0].endswith("-t squad-qa:stubbed -f docker/Dockerfile .")
    assert forbidden_calls(stubs) == []
    assert not stubs[2].exists()


def test_make_docker_stop_without_a_private_engine_does_nothing(stubs):
    result = make(stubs, "docker-stop", info_rc=0)
    assert result.returncode == 0, result.stderr
    assert calls(stubs) == []
