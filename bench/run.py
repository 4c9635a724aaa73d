"""Side-by-side benchmark: the QA service against the transformers QA pipeline and Optimum's int8 model.

    python -m bench.run --model DIR [--n 1000] [--backend auto] [--data dev-v1.1.json.gz]

All run in this one invocation, one after the other, on the same machine and the same fp32
weights, each as a real gunicorn server on a free loopback port: the service, the baseline
(transformers.pipeline on torch fp32) and the strongest peer (the same pipeline on Optimum's
ORTModelForQuestionAnswering, int8 from Optimum's own quantiser). The peers' app is
bench/baseline_wsgi.py, in its own virtualenv because transformers 5 dropped the QA pipeline.
Each gets the same N SQuAD dev questions (a seeded sample) at concurrency 1 and then 8, over
keep-alive HTTP connections. Then the engine alone: the faster of one process per core and one
process with a thread per core, answering the same questions with no HTTP, the ceiling the
service's concurrency-8 throughput is compared with.
Writes bench/results.json and bench/results.png: exact match and F1 (official v1.1 metric,
answers from the concurrency-1 pass), peak RSS of the server's processes, cold start (spawn to
/readyz 200), throughput and latency percentiles, a profile of where a service request's time
goes, and the issue's targets with the measured figure beside each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procfs import cpu_seconds, process_tree, rss_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "bench"
DEFAULT_DATA = Path(os.environ.get("SQUAD_DIR", REPO_ROOT.parent / "shared" / "data" / "squad")) / "dev-v1.1.json.gz"
LOG_DIR = BENCH_DIR / "results"  # server logs (git-ignored)
BASELINE_PYTHON = REPO_ROOT / ".venv-baseline" / "bin" / "python"
SERVICE_APP = "serve.wsgi:app"
BASELINE_APP = "bench.baseline_wsgi:app"
OPTIMUM_EXPORT = BENCH_DIR / "optimum_export.py"
ANSWER_PATH = "/v1/answer"
READY_PATH = "/readyz"
CONCURRENCY = (1, 8)
WARMUP_REQUESTS = 8
READY_TIMEOUT_S = 180


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[str]


def load_examples(path: Path, n: int, seed: int) -> list[Example]:
    from train.data import load_squad

    examples = load_squad(path)
    if n > len(examples):
        raise SystemExit(f"--n {n} is more than the {len(examples)} questions in {path}")
    picked = random.Random(seed).sample(examples, n)
    return [Example(e.id, e.question, e.context, list(e.answer_texts)) for e in picked]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers ----------------------------------------------------------------------------------


def worker_class(threads: int, keep_alive: bool = False) -> str:
    """As serve/gunicorn.conf.py chooses: sync workers (no keep-alive) for one thread."""
    return "gthread" if threads > 1 or keep_alive else "sync"


class Server:
    """A gunicorn process tree; samples its total RSS every 50 ms until stopped."""

    def __init__(self, name: str, python: Path, app: str, env: dict[str, str], workers: int, threads: int):
        self.name, self.port = name, free_port()
        self.worker_class = worker_class(threads, keep_alive=app == BASELINE_APP)
        self.cmd = [
            str(python),
            "-m",
            "gunicorn",
            app,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            self.worker_class,
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        if app != BASELINE_APP:
            self.cmd[3:3] = ["-c", str(REPO_ROOT / "serve" / "gunicorn.conf.py")]
        # The service's gunicorn.conf.py reads workers and threads from these variables (and
        # sets QA_THREADS = cores / workers from them); the baseline gets the same numbers.
        self.env = {
            **os.environ,
            **env,
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "QA_WORKERS": str(workers),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        if "QA_THREADS" not in env:
            self.env.pop("QA_THREADS", None)
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.peak_rss_mb = 0.0
        self._stop = threading.Event()

    def start(self) -> float:
        """Spawns the server; returns seconds until /readyz answered 200."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = open(LOG_DIR / f"{self.name}-server.log", "w")  # noqa: SIM115 - closed in stop()
        began = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} server exited with {self.proc.returncode}; see {self.log.name}")
            if time.perf_counter() - began > READY_TIMEOUT_S:
                self.stop()
                raise SystemExit(f"{self.name} server not ready after {READY_TIMEOUT_S}s; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=READY_TIMEOUT_S)
                conn.request("GET", READY_PATH)
                if conn.getresponse().status == 200:
                    return time.perf_counter() - began
            except OSError:
                pass
            time.sleep(0.01)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, rss_bytes(process_tree(self.proc.pid)) / 2**20)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- load -------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects if the server closed it."""

    def __init__(self, port: int, host: str = "127.0.0.1", headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        """(status, body) of one JSON POST."""
        data = json.dumps(body)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request("POST", path, data, self.headers)
                response = self.conn.getresponse()
                payload = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, payload
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def ask(self, question: str, context: str) -> dict:
        status, payload = self.post(ANSWER_PATH, {"question": question, "context": context})
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:300]!r}")
        return json.loads(payload)


def run_load(port: int, examples: Sequence[Example], concurrency: int) -> tuple[dict[str, str], list[float], float]:
    """Sends every example once with `concurrency` clients; returns answers, latencies (ms), wall (s)."""
    answers: dict[str, str] = {}
    latencies: list[float] = [0.0] * len(examples)
    next_index = iter(range(len(examples)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        client = Client(port)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or errors:
                return
            ex = examples[i]
            began = time.perf_counter()
            try:
                reply = client.ask(ex.question, ex.context)
            except BaseException as exc:  # noqa: BLE001 - reported after the run
                errors.append(exc)
                return
            latencies[i] = (time.perf_counter() - began) * 1000
            answers[ex.id] = reply["answer"]

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if errors:
        raise SystemExit(f"requests failed on port {port}: {errors[0]}")
    return answers, latencies, wall


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(latencies: Sequence[float], wall: float) -> dict:
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "wall_s": round(wall, 2),
    }


def score(examples: Sequence[Example], predictions: dict[str, str]) -> dict:
    from train.metrics.squad_v1 import compute_score  # imported late: written by the training pipeline

    scores = compute_score({e.id: e.answers for e in examples}, predictions)
    return {"exact_match": round(scores["exact_match"], 2), "f1": round(scores["f1"], 2)}


def median_context_example(examples: Sequence[Example]) -> Example:
    return sorted(examples, key=lambda e: len(e.context))[len(examples) // 2]


def bench_server(
    server: Server,
    examples: Sequence[Example],
    single: Example,
    single_repeats: int,
    profiler: Callable[[Sequence[float]], dict] | None = None,
) -> dict:
    print(f"[{server.name}] starting: {' '.join(server.cmd)}", flush=True)
    result: dict = {}
    try:
        result["cold_start_s"] = round(server.start(), 3)
        print(f"[{server.name}] ready in {result['cold_start_s']} s", flush=True)
        warm = Client(server.port)
        for ex in examples[:WARMUP_REQUESTS]:
            warm.ask(ex.question, ex.context)
        first_answers = None
        for concurrency in CONCURRENCY:
            cpu_before = cpu_seconds(process_tree(server.proc.pid))
            answers, latencies, wall = run_load(server.port, examples, concurrency)
            cpu_used = cpu_seconds(process_tree(server.proc.pid)) - cpu_before
            result[f"concurrency_{concurrency}"] = latency_summary(latencies, wall)
            # Server CPU per answer: what the other tenants of a shared machine disturb least.
            result[f"concurrency_{concurrency}"]["server_cpu_ms_per_request"] = round(
                cpu_used * 1000 / len(examples), 2
            )
            print(f"[{server.name}] c={concurrency}: {result[f'concurrency_{concurrency}']}", flush=True)
            if first_answers is None:
                first_answers = answers
                c1_latencies = latencies
                result.update(score(examples, answers))
            else:
                same = sum(answers[k] == first_answers[k] for k in first_answers) / len(first_answers)
                result[f"c{concurrency}_answers_identical_to_c1"] = round(same, 4)
        single_latencies = []
        for _ in range(single_repeats):
            began = time.perf_counter()
            warm.ask(single.question, single.context)
            single_latencies.append((time.perf_counter() - began) * 1000)
        result["median_context_single_request"] = {
            "context_chars": len(single.context),
            "requests": single_repeats,
            "p50_ms": round(statistics.median(single_latencies), 2),
        }
        if profiler is not None:
            result["_profile"] = profiler(c1_latencies)
    finally:
        server.stop()
    result["peak_rss_mb"] = round(server.peak_rss_mb, 1)
    return result


# --- where the time goes ----------------------------------------------------------------------


def profile_service(
    model_dir: Path, backend: str, threads: int, examples: Sequence[Example], http_latencies: Sequence[float]
) -> dict:
    """Where a concurrency-1 request's time goes, per stage, in ms.

    Run right after the service's concurrency-1 pass while its server sits idle: the engine's
    stages are timed in this process on the same questions (same backend and threads), and
    HTTP (client, gunicorn, Flask, JSON, access log, metrics) is each question's latency in
    that pass minus its engine time here. (Not interleaved with requests: ONNX Runtime's
    spinning threads of one process would slow the other's.) Medians are reported next to
    means because other work on a shared machine adds outliers.
    """
    from qa.decoding import decode_example
    from qa.engine import QAEngine

    engine = QAEngine.from_model_dir(model_dir, backend=backend, threads=threads, batch_size=16)
    for ex in examples[:WARMUP_REQUESTS]:
        engine.answer(ex.question, ex.context)
    stages: dict[str, list[float]] = {"tokenisation": [], "model": [], "decoding": [], "http": []}
    windows_per_question = []
    for ex, http_ms in zip(examples, http_latencies, strict=True):
        t0 = time.perf_counter()
        windows = engine.windower.windows([ex.question], [ex.context])
        t1 = time.perf_counter()
        starts, ends = engine.window_logits(windows)
        t2 = time.perf_counter()
        decode_example(
            ex.context,
            windows,
            starts,
            ends,
            n_best=engine.params.n_best,
            max_answer_length=engine.params.max_answer_length,
        )
        t3 = time.perf_counter()
        stages["tokenisation"].append((t1 - t0) * 1000)
        stages["model"].append((t2 - t1) * 1000)
        stages["decoding"].append((t3 - t2) * 1000)
        stages["http"].append(http_ms - (t3 - t0) * 1000)
        windows_per_question.append(len(windows))
    return {
        "questions": len(examples),
        "mean_ms": {name: round(statistics.fmean(v), 3) for name, v in stages.items()},
        "median_ms": {name: round(statistics.median(v), 3) for name, v in stages.items()},
        "http_c1_mean_ms": round(statistics.fmean(http_latencies), 3),
        "http_c1_median_ms": round(statistics.median(http_latencies), 3),
        "windows_per_question": round(statistics.fmean(windows_per_question), 3),
        "backend": engine.backend.name,
        "threads": threads,
        "method": "engine stages timed in process right after the concurrency-1 pass; "
        "http = that pass's latency - engine time, per question",
    }


def service_gunicorn_settings(model_dir: Path, workers: int | None, threads: int | None) -> tuple[int, int]:
    """workers/threads: the command line's, else what serve/gunicorn.conf.py would use now.

    The config file is read in a child process: reading it checks the model and sets variables.
    """
    probe = (
        "import json, runpy; c = runpy.run_path('serve/gunicorn.conf.py'); "
        "print(json.dumps([c['workers'], c['threads']]))"
    )
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as metrics_dir:
        env = {**os.environ, "QA_MODEL_DIR": str(model_dir), "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cannot read serve/gunicorn.conf.py: {done.stderr.strip()}")
    conf_workers, conf_threads = json.loads(done.stdout.strip().splitlines()[-1])
    return int(workers or conf_workers), int(threads or conf_threads)


# --- the engine alone -------------------------------------------------------------------------


def _engine_worker(model_dir, backend, threads, examples, ready, go, results) -> None:
    from qa.engine import QAEngine

    engine = QAEngine.from_model_dir(model_dir, backend=backend, threads=threads)
    for ex in examples[:WARMUP_REQUESTS]:
        engine.answer(ex.question, ex.context)
    ready.put(True)
    go.wait()
    cpu_before = time.process_time()
    for ex in examples:
        engine.answer(ex.question, ex.context)
    results.put((time.monotonic(), time.process_time() - cpu_before))


def _engine_pass(model_dir: Path, backend: str, examples: Sequence[Example], processes: int, threads: int) -> dict:
    """`processes` processes of `threads` threads share the questions, each answering one at a time."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    shares = [list(examples[i::processes]) for i in range(processes)]
    workers = [
        context.Process(target=_engine_worker, args=(str(model_dir), backend, threads, share, ready, go, results))
        for share in shares
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=READY_TIMEOUT_S)
    began = time.monotonic()
    go.set()
    finished = [results.get(timeout=3600) for _ in workers]
    for w in workers:
        w.join()
    wall = max(end for end, _ in finished) - began
    return {
        "processes": processes,
        "threads_per_process": threads,
        "throughput_rps": round(len(examples) / wall, 2),
        "wall_s": round(wall, 2),
        # CPU of the answering processes (all their threads), comparable with the servers' figure.
        "cpu_ms_per_request": round(sum(cpu for _, cpu in finished) * 1000 / len(examples), 2),
    }


def engine_limit(model_dir: Path, backend: str, examples: Sequence[Example], cores: int) -> dict:
    """Answers/s of the engine alone, with no HTTP in between: the faster of one process per core
    (1 thread each) and one process with a thread per core, answering one question at a time as the
    service does. The second is the service's default layout (one worker, its threads on every core)."""
    layouts = [(cores, 1)] + ([(1, cores)] if cores > 1 else [])
    passes = [_engine_pass(model_dir, backend, examples, processes, threads) for processes, threads in layouts]
    best = max(passes, key=lambda p: p["throughput_rps"])
    return {
        **best,
        "requests": len(examples),
        "layouts": passes,
        "method": "QAEngine.answer per question, the faster of one process per core and one process "
        "with a thread per core, no HTTP",
    }


def full_dev_f1(model_dir: Path, backend: str) -> dict:
    """The served backend's full-dev F1 (its gate's evaluation) against fp32's, from the model directory."""
    from qa.model_dir import METRICS_FILE, eval_metrics_file, read_gate_records

    def f1_of(name: str) -> float | None:
        try:
            return float(json.loads((model_dir / name).read_text(encoding="utf-8"))["f1"])
        except (OSError, ValueError, KeyError):
            return None

    record = read_gate_records(model_dir).get(backend, {})
    served = f1_of(eval_metrics_file(backend))
    fp32 = f1_of(METRICS_FILE)
    return {
        "backend": backend,
        "f1": served,
        "fp32_f1": fp32,
        "f1_drop_vs_fp32": round(fp32 - served, 2) if served is not None and fp32 is not None else None,
        "questions": record.get("questions"),
        "measured_on": record.get("cpu"),
    }


def targets(results: dict, reference: dict | None = None) -> list[dict]:
    """The service's targets, each with the figure this run measured (None: not measured).

    `reference` is an earlier results.json of the same CPU: the median-context p50 must not be
    worse than it was then (beyond this machine's run-to-run noise, which the row's goal names)."""
    ratios, service = results.get("ratios", {}), results["service"]
    drop = results.get("full_dev", {}).get("f1_drop_vs_fp32")
    single_p50 = service["median_context_single_request"]["p50_ms"]
    engine_cpu = results.get("engine_limit", {}).get("cpu_ms_per_request")
    service_cpu = service["concurrency_8"].get("server_cpu_ms_per_request")
    same = service.get("c8_answers_identical_to_c1")
    rows = [
        ("c8 throughput vs transformers pipeline", ">=", 3.0, ratios.get("throughput_c8_vs_baseline")),
        ("c8 throughput vs Optimum ORT int8", ">=", 1.1, ratios.get("throughput_c8_vs_optimum")),
        ("service c8 throughput vs engine limit", ">=", 0.85, ratios.get("service_c8_vs_engine_limit")),
        ("server CPU per answer at c8 vs the engine's", "<=", 1.2,
         round(service_cpu / engine_cpu, 3) if service_cpu and engine_cpu else None),
        ("c8 answers identical to c1 (share)", ">=", 1.0, same),
        ("c1 p50 ms, median-length dev context", "<=", 10.0, single_p50),
    ]
    if reference is not None:
        before = reference["service"]["median_context_single_request"]["p50_ms"]
        rows.append((f"c1 p50 median context vs the reference run ({before} ms)", "<=", 1.0,
                     round(single_p50 / before, 3)))
    rows += [
        ("F1 drop of the served backend vs fp32 (full dev)", "<=", 0.5, drop),
        ("cold start to ready, s", "<=", 2.0, service["cold_start_s"]),
    ]
    return [
        {"figure": name, "target": f"{op} {goal}", "measured": value,
         "met": None if value is None else (value >= goal if op == ">=" else value <= goal)}
        for name, op, goal, value in rows
    ]


# --- plot -------------------------------------------------------------------------------------


def _plot_profile(ax, profile: dict) -> None:
    parts = [(k, profile[k]) for k in ("tokenisation", "model", "decoding", "http")]
    bottom = 0.0
    for (name, value), colour in zip(parts, ("#2ca02c", "#1f77b4", "#9467bd", "#7f7f7f"), strict=True):
        ax.bar([0], [max(value, 0)], 0.5, bottom=bottom, label=f"{name} {value:.2f} ms", color=colour)
        bottom += max(value, 0)
    ax.set_xticks([0], ["service, concurrency 1\n(median per request)"])
    ax.set_ylabel("ms")
    ax.set_title("Where the time goes")
    ax.legend(fontsize=8)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [(side, colour) for side, colour in (("service", "#1f77b4"), ("baseline", "#ff7f0e"),
                                                   ("optimum", "#2ca02c")) if side in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    bar = 0.8 / len(sides)
    for si, (side, colour) in enumerate(sides):
        offset = (si - (len(sides) - 1) / 2) * bar
        values = [results[side][f"concurrency_{c}"]["throughput_rps"] for c in CONCURRENCY]
        ax.bar([i + offset for i in range(len(CONCURRENCY))], values, bar, label=side, color=colour)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.0f}", (i + offset, v), ha="center", va="bottom", fontsize=8)
    if "engine_limit" in results:
        ax.axhline(results["engine_limit"]["throughput_rps"], color="#7f7f7f", linestyle="--", label="engine limit")
    ax.set_xticks(range(len(CONCURRENCY)), [f"concurrency {c}" for c in CONCURRENCY])
    ax.set_ylabel("requests / s")
    ax.set_title("Throughput")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.legend(loc="upper center", ncols=2)

    ax = axes[1]
    labels, width = [], 0.2
    for ci, c in enumerate(CONCURRENCY):
        for si, (side, colour) in enumerate(sides):
            summary = results[side][f"concurrency_{c}"]
            x = ci * (len(sides) + 0.5) + si
            labels.append((x, f"{side}\nc={c}"))
            for pi, (p, shade) in enumerate((("p50_ms", 1.0), ("p95_ms", 0.7), ("p99_ms", 0.45))):
                ax.bar(
                    x + (pi - 1) * width,
                    summary[p],
                    width,
                    color=colour,
                    alpha=shade,
                    label=p.replace("_ms", "") if ci == 0 and si == 0 else None,
                )
    ax.set_xticks([x for x, _ in labels], [label for _, label in labels], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Latency p50 / p95 / p99")
    ax.legend()

    if "profile" not in results:
        axes[2].set_visible(False)
    else:
        _plot_profile(axes[2], results["profile"]["service"]["median_ms"])
    fig.suptitle(
        f"{results['model']} ({results['service']['backend']}) vs transformers pipeline and Optimum int8, "
        f"{results['questions']} SQuAD dev questions, {results['machine']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="model directory (fp32 weights + ONNX export)")
    parser.add_argument("--n", type=int, default=1000, help="SQuAD dev questions per pass (default 1000)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0, help="seed of the question sample")
    parser.add_argument("--backend", default="auto", help="auto, openvino-int8, onnx-int8, onnx-fp32, torch")
    parser.add_argument("--workers", type=int, help="gunicorn workers for both (default: serve/gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, help="gunicorn threads for both (default: serve/gunicorn.conf.py)")
    parser.add_argument(
        "--baseline-python",
        type=Path,
        default=BASELINE_PYTHON,
        help="python of the virtualenv with transformers 4.x (make bench-setup)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="measure the service only (no peers)")
    parser.add_argument("--skip-optimum", action="store_true", help="no Optimum int8 peer")
    parser.add_argument("--skip-engine-limit", action="store_true", help="no in-process engine limit")
    parser.add_argument("--skip-profile", action="store_true", help="no in-process stage profile")
    parser.add_argument("--profile-n", type=int, default=None, help="questions in the profile (default: all)")
    parser.add_argument("--baseline-workers", type=int, help="gunicorn workers for the baseline (default: cores)")
    parser.add_argument("--baseline-threads", type=int, help="gunicorn threads for the baseline (default: 1)")
    parser.add_argument("--service-app", default=SERVICE_APP, help="WSGI app of the service (for experiments)")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service, e.g. QA_BATCH_MAX_SIZE=8 (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument(
        "--reference",
        type=Path,
        help="an earlier results.json from this same CPU: its median-context p50 is the one not to lose",
    )
    parser.add_argument(
        "--single-repeats",
        type=int,
        default=100,
        help="requests on the median-length context for the single-request p50",
    )
    args = parser.parse_args(argv)

    from qa.backends import cores_per_worker, resolve_backend_name, usable_cores
    from train.hardware import cpu_description

    model_dir = args.model.resolve()
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"{model_dir} is not a model directory (no config.json)")
    if not args.skip_baseline and not args.baseline_python.exists():
        raise SystemExit(f"no baseline interpreter at {args.baseline_python}; run `make bench-setup` first")
    backend = resolve_backend_name(args.backend, model_dir)
    workers, threads = service_gunicorn_settings(model_dir, args.workers, args.threads)
    examples = load_examples(args.data, args.n, args.seed)
    single = median_context_example(load_examples(args.data, 2000, args.seed + 1))
    load_before = os.getloadavg()

    results: dict = {
        "model": str(model_dir),
        "questions": len(examples),
        "data": str(args.data),
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before]},
        "http": {"workers": workers, "threads": threads, "worker_class": worker_class(threads)},
        "baseline_mode": "http: gunicorn + Flask app bench/baseline_wsgi.py, same route and client",
    }

    service_env = {"QA_MODEL_DIR": str(model_dir), "QA_BACKEND": backend}
    for item in args.service_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--service-env wants KEY=VALUE, not {item!r}")
        service_env[key] = value
    service = Server("service", Path(sys.executable), args.service_app, service_env, workers, threads)
    results["service_env"] = service_env

    def profiler(c1_latencies: Sequence[float]) -> dict:
        # The engine in this process gets the threads a service worker gets.
        os.environ["QA_WORKERS"] = str(workers)
        n = args.profile_n or len(examples)
        return profile_service(model_dir, backend, cores_per_worker(), examples[:n], c1_latencies[:n])

    service_result = bench_server(
        service, examples, single, args.single_repeats, None if args.skip_profile else profiler
    )
    if "_profile" in service_result:
        results["profile"] = {"service": service_result.pop("_profile")}
    results["service"] = {"backend": backend, **service_result}
    if not args.skip_baseline:
        # The pipeline is not thread-safe, so its natural gunicorn layout is one process per core
        # (torch 1 thread each), which is also its fastest at concurrency 8; gthread keeps the
        # client's connections alive as the service's do.
        b_workers = args.baseline_workers or usable_cores()
        b_threads = args.baseline_threads or 1

        def bench_peer(name: str, label: str, env: dict[str, str]) -> dict:
            server = Server(name, args.baseline_python, BASELINE_APP, env, b_workers, b_threads)
            return {
                "backend": label,
                "http": {"workers": b_workers, "threads": b_threads, "worker_class": server.worker_class},
                **bench_server(server, examples, single, args.single_repeats),
            }

        results["baseline"] = bench_peer("baseline", "transformers.pipeline (torch fp32)",
                                         {"QA_MODEL_DIR": str(model_dir)})
        if not args.skip_optimum:
            optimum_dir = LOG_DIR / "optimum-int8"
            print(f"[optimum] exporting and quantising {model_dir} with Optimum into {optimum_dir}", flush=True)
            done = subprocess.run([str(args.baseline_python), str(OPTIMUM_EXPORT), str(model_dir), str(optimum_dir)],
                                  cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if done.returncode != 0:
                raise SystemExit(f"the Optimum export failed ({done.returncode}); see its output above")
            results["optimum"] = bench_peer(
                "optimum",
                "transformers.pipeline on optimum ORTModelForQuestionAnswering (Optimum dynamic int8)",
                {"QA_MODEL_DIR": str(optimum_dir), "QA_TOKENIZER_DIR": str(model_dir), "QA_PEER": "optimum-int8"},
            )
    if not args.skip_engine_limit:
        print(f"[engine] {usable_cores()} processes x 1 thread and 1 process x {usable_cores()} threads, no HTTP",
              flush=True)
        results["engine_limit"] = engine_limit(model_dir, backend, examples, usable_cores())
        print(f"[engine] {results['engine_limit']}", flush=True)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["cpu"] = cpu_description()
    results["full_dev"] = full_dev_f1(model_dir, backend)

    s, ratios = results["service"], {}
    for peer in ("baseline", "optimum"):
        if peer in results:
            for c in CONCURRENCY:
                ratios[f"throughput_c{c}_vs_{peer}"] = round(
                    s[f"concurrency_{c}"]["throughput_rps"] / results[peer][f"concurrency_{c}"]["throughput_rps"], 2
                )
            ratios[f"f1_minus_{peer}"] = round(s["f1"] - results[peer]["f1"], 2)
    if "engine_limit" in results:
        ratios["service_c8_vs_engine_limit"] = round(
            s["concurrency_8"]["throughput_rps"] / results["engine_limit"]["throughput_rps"], 3
        )
    results["ratios"] = ratios
    reference = None
    if args.reference:
        reference = json.loads(args.reference.read_text(encoding="utf-8"))
        if reference.get("machine", {}).get("cpu") != results["machine"]["cpu"]:
            raise SystemExit(f"{args.reference} was measured on {reference.get('machine', {}).get('cpu')!r}, "
                             f"not on this CPU ({results['machine']['cpu']!r})")
        results["reference"] = {"file": str(args.reference), "date": reference.get("date")}
    results["targets"] = targets(results, reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if "baseline" in results:
        plot(results, args.out.with_suffix(".png"))
    print(json.dumps({k: results[k] for k in ("ratios", "profile", "full_dev") if k in results}, indent=2))
    for row in results["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"  {row['figure']:<50} target {row['target']:<8} measured {row['measured']}  {verdict}")
    print(f"wrote {args.out}" + (f" and {args.out.with_suffix('.png')}" if "baseline" in results else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
