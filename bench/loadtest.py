"""Bounded load test on loopback: wrk against a real gunicorn serving MODEL, or the serving image.

    python -m bench.loadtest --model DIR [--duration 60] [--connections 32] [--warmup 15]
    python -m bench.loadtest --image TAG [--memory 512m] [--cpus 1] [--port 8080] [--env NAME=VALUE ...]
    make loadtest MODEL=DIR

With --image the server is `docker run` of the image, limited as a free host limits it (memory,
CPUs, the $PORT it must listen on); the report adds the container's cgroup memory peak and
whether the kernel killed it for memory.

Starts gunicorn itself (serve/gunicorn.conf.py, serve.wsgi:app) on a free loopback port, waits
for /readyz, warms up with wrk for --warmup seconds, records the server's resident memory (the
master plus its workers, from /proc), runs wrk for --duration seconds at --connections open
connections (POST /v1/answer, bench/loadtest.lua), records the memory again and stops the server
with SIGTERM. Prints and writes (--out) errors, latency percentiles, throughput and RSS growth.
Exits 1 when the goals are missed: 0 errors and RSS growth under --max-rss-growth percent.
Needs wrk (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.procfs import children, rss_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
LUA_SCRIPT = REPO_ROOT / "bench" / "loadtest.lua"
START_TIMEOUT_S = 180


class LoadTestError(RuntimeError):
    pass


# ---------------------------------------------------------------- the server


def poll_readyz(server: Server | Container, started: float) -> None:
    """Until /readyz answers 200 (START_TIMEOUT_S after `started`); a server that exits is an error."""
    while time.monotonic() - started < START_TIMEOUT_S:
        if not server.alive():
            raise LoadTestError(f"the server exited before it was ready:\n{server.recent_log()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)  # polling /readyz
    raise LoadTestError(f"the server never became ready:\n{server.recent_log()}")


class Server:
    def __init__(self, model: Path, backend: str, workers: int, threads: int) -> None:
        env = {
            **os.environ,
            "QA_MODEL_DIR": str(model),
            "QA_BACKEND": backend,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn.conf.py", "serve.wsgi:app"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # one access-log line per request: not needed here
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.port: int | None = None
        self._listening = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self._listening.set()
        self._listening.set()

    def wait_ready(self) -> float:
        started = time.monotonic()
        if not self._listening.wait(START_TIMEOUT_S) or self.port is None:
            raise LoadTestError("gunicorn did not start:\n" + "".join(self.log[-20:]))
        poll_readyz(self, started)
        return time.monotonic() - started

    def readyz(self) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/readyz")
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def rss_bytes(self) -> int:
        return rss_bytes([self.process.pid, *children(self.process.pid)])

    def alive(self) -> bool:
        return self.process.poll() is None

    def recent_log(self) -> str:
        return "".join(self.log[-20:])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Container:
    """The serving image under `docker run`, with a host's limits: memory, CPUs and the $PORT it sets.

    The container's processes are this host's processes (a local engine), so RSS is read from /proc
    as for gunicorn; the cgroup adds the peak the memory limit is enforced against.
    """

    def __init__(self, image: str, port: int, memory: str, cpus: str | None, env: list[str]) -> None:
        self.docker = shutil.which("docker") or "docker"
        self.name = f"qa-loadtest-{os.getpid()}"
        self.port = free_port()
        command = [self.docker, "run", "-d", "--name", self.name, "--memory", memory, "--memory-swap", memory,
                   "-e", f"PORT={port}", "-p", f"127.0.0.1:{self.port}:{port}"]
        command += ["--cpus", cpus] if cpus else []
        for assignment in env:
            command += ["-e", assignment]
        started = subprocess.run([*command, image], capture_output=True, text=True)
        if started.returncode != 0:
            raise LoadTestError(f"docker run failed: {started.stderr.strip()}")
        self.pid = int(self._inspect("{{.State.Pid}}"))
        self.peak_file = self._memory_peak_file(self.pid)

    @staticmethod
    def _memory_peak_file(pid: int) -> Path | None:
        """cgroup v2's memory.peak (kernel 5.19+) or v1's memory.max_usage_in_bytes for pid's cgroup."""
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.peak"
            elif "memory" in controllers.split(","):
                candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.max_usage_in_bytes"
            else:
                continue
            if candidate.is_file():
                return candidate
        return None

    def _inspect(self, template: str) -> str:
        return subprocess.run([self.docker, "inspect", "-f", template, self.name],
                              capture_output=True, text=True, check=True).stdout.strip()

    def wait_ready(self) -> float:
        started = time.monotonic()
        poll_readyz(self, started)
        return time.monotonic() - started

    readyz = Server.readyz

    def rss_bytes(self) -> int:
        return rss_bytes([self.pid, *children(self.pid)])

    def cgroup_peak_bytes(self) -> int | None:
        try:
            return int(self.peak_file.read_text()) if self.peak_file else None
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        return self._inspect("{{.State.Running}}") == "true"

    def recent_log(self) -> str:
        return subprocess.run([self.docker, "logs", "--tail", "20", self.name],
                              capture_output=True, text=True).stderr

    def stop(self) -> int:
        self.memory_peak = self.cgroup_peak_bytes()  # the cgroup goes with the container
        subprocess.run([self.docker, "stop", "-t", "30", self.name], capture_output=True)
        self.oom_killed = self._inspect("{{.State.OOMKilled}}") == "true"
        exit_code = int(self._inspect("{{.State.ExitCode}}"))
        subprocess.run([self.docker, "rm", "-f", self.name], capture_output=True)
        return exit_code


class PeakSampler:
    """Samples the server's RSS once a second while wrk runs."""

    def __init__(self, server: Server | Container) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self.server.rss_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- wrk


def run_wrk(port: int, duration_s: int, connections: int, threads: int, timeout_s: int,
            context_chars: int | None = None) -> dict:
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s}s",
        f"--timeout={timeout_s}s",
        f"--script={LUA_SCRIPT}",
        "--latency",
        f"http://127.0.0.1:{port}/v1/answer",
    ]
    if context_chars:
        command += ["--", str(context_chars)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    found = re.search(r"^WRK_JSON (\{.*\})$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not found:
        raise LoadTestError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    stats = json.loads(found.group(1))
    stats["throughput_rps"] = round(stats["requests"] / (stats["duration_us"] / 1e6), 2)
    stats["total_errors"] = sum(stats["errors"].values())
    return stats


def mib(n: int) -> float:
    return round(n / 2**20, 1)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="serve this model directory with gunicorn")
    source.add_argument("--image", help="docker run this serving image instead")
    parser.add_argument("--port", type=int, default=8080, help="with --image: the $PORT the container listens on")
    parser.add_argument("--memory", default="512m", help="with --image: docker run --memory (and --memory-swap)")
    parser.add_argument("--cpus", help="with --image: docker run --cpus")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="with --image: an environment variable for the container (repeatable)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--duration", type=int, default=60, help="seconds of measured load")
    parser.add_argument("--warmup", type=int, default=15, help="seconds of load before the first RSS reading")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY") or 2))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS") or 4))
    parser.add_argument("--context-chars", type=int,
                        help="pad each context to this many characters (a long document); default: one paragraph")
    parser.add_argument("--request-timeout", type=int, default=30, help="seconds before wrk counts a timeout")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="percent, after warm-up")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "loadtest.json")
    args = parser.parse_args(argv)

    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)", file=sys.stderr)
        return 2
    if args.model is not None and not args.model.is_dir():
        print(f"error: model directory {args.model} does not exist", file=sys.stderr)
        return 2
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 120:
        print("error: --duration must be 1-600 s and --warmup 0-120 s (the run is bounded)", file=sys.stderr)
        return 2

    if args.image:  # the image's own defaults (docker/Dockerfile) unless --env sets them
        given = dict(assignment.split("=", 1) for assignment in args.env if "=" in assignment)
        args.workers = int(given.get("WEB_CONCURRENCY", 1))
        args.threads = int(given.get("GUNICORN_THREADS", 4))
    try:
        if args.image:
            server = Container(args.image, args.port, args.memory, args.cpus, args.env)
        else:
            server = Server(args.model, args.backend, args.workers, args.threads)
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        ready_s = server.wait_ready()
        rss_ready = server.rss_bytes()
        served = server.readyz()
        warmup = None
        if args.warmup:
            warmup = run_wrk(server.port, args.warmup, args.connections, args.wrk_threads, args.request_timeout,
                             args.context_chars)
        load_before = load_average()
        rss_before = server.rss_bytes()
        with PeakSampler(server) as sampler:
            stats = run_wrk(server.port, args.duration, args.connections, args.wrk_threads, args.request_timeout,
                            args.context_chars)
        rss_after = server.rss_bytes()
        load_after = load_average()
        if not server.alive():
            raise LoadTestError(f"the server died during the run:\n{server.recent_log()}")
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        exit_code = server.stop()

    growth = 100.0 * (rss_after - rss_before) / rss_before
    report = {
        "model": str(args.model) if args.model else None,
        "image": args.image,
        "backend": served.get("backend"),
        "model_version": served.get("version"),
        "workers": args.workers,
        "threads": args.threads,
        "connections": args.connections,
        "context_chars": args.context_chars,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "ready_after_s": round(ready_s, 1),
        "requests": stats["requests"],
        "throughput_rps": stats["throughput_rps"],
        "latency_ms": stats["latency_ms"],
        "errors": {**stats["errors"], "total": stats["total_errors"]},
        "warmup_requests": warmup["requests"] if warmup else 0,
        "warmup_errors": warmup["total_errors"] if warmup else 0,
        "rss_mib": {
            "ready": mib(rss_ready),
            "after_warmup": mib(rss_before),
            "after_run": mib(rss_after),
            "peak_during_run": mib(max(sampler.peak, rss_after)),
        },
        "rss_growth_percent": round(growth, 2),
        "server_exit_code": exit_code,
    }
    if isinstance(server, Container):
        peak = server.memory_peak
        report["container"] = {"port": args.port, "memory_limit": args.memory, "cpus": args.cpus, "env": args.env,
                               "cgroup_memory_peak_mib": mib(peak) if peak else None,
                               "oom_killed": server.oom_killed}
    goals = {
        "no errors": stats["total_errors"] == 0,
        f"RSS growth under {args.max_rss_growth:g} %": growth < args.max_rss_growth,
        "clean shutdown (exit 0)": exit_code == 0,
    }
    if isinstance(server, Container):
        goals[f"not killed for memory under --memory {args.memory}"] = not server.oom_killed
    report["goals"] = goals
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    lat = stats["latency_ms"]
    print(
        f"{stats['requests']} requests in {args.duration} s at {args.connections} connections: "
        f"{stats['throughput_rps']} req/s, {args.workers} worker(s) x {args.threads} thread(s), "
        f"backend {report['backend']}"
    )
    print(f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}")
    print(f"errors: {report['errors']}")
    rss = report["rss_mib"]
    print(
        f"RSS MiB: ready {rss['ready']}, after warm-up {rss['after_warmup']}, after run {rss['after_run']} "
        f"({growth:+.2f} %), peak {rss['peak_during_run']}"
    )
    if "container" in report:
        print(f"container: PORT={args.port}, --memory {args.memory}, --cpus {args.cpus or 'unlimited'}, "
              f"cgroup memory peak {report['container']['cgroup_memory_peak_mib']} MiB, "
              f"OOM-killed: {report['container']['oom_killed']}")
    print(f"load average before/after: {load_before} / {load_after} on {os.cpu_count()} CPUs")
    for goal, met in goals.items():
        print(f"  {'PASS' if met else 'FAIL'}  {goal}")
    print(f"written to {args.out}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
