"""What watching the model costs, and whether the drift check sees a change of traffic.

    python -m bench.monitoring cost [--model DIR] [--n 400] [--rounds 3]
    python -m bench.monitoring drift [--model DIR] [--n 600] [--out-of-domain FILE]
    make bench-monitoring

cost: two gunicorns of the same model (1 worker, 1 thread each, the multiprocess metrics files as
in production), one with the model-behaviour metrics (QA_MODEL_METRICS=1) and one without. The
same dev questions go to both, one at a time (concurrency 1), alternating server by question so
that a slower minute of the machine hits both alike; repeated for --rounds. Reports p50 and mean
latency of each and the difference in percent.

drift: one gunicorn; --n dev questions, then `serve.drift` over what they left in /metrics;
then --n questions of the out-of-domain file (default PolicyQA dev: privacy policies) against
their own contexts, and `serve.drift` over those alone (the difference of two scrapes).
Writes bench/monitoring/<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from bench.run import Client, Server, load_examples, percentile
from qa.model_dir import REFERENCE_PROFILE_FILE, SHIPPED_MODEL_DIR
from qa.monitoring import Profile, compare
from serve.drift import check, difference, live_profile, render, scrape

REPO_ROOT = Path(__file__).resolve().parents[1]
SQUAD_DIR = REPO_ROOT.parent / "shared" / "data" / "squad"
DEV = SQUAD_DIR / "dev-v1.1.json.gz"
POLICYQA_DEV = REPO_ROOT.parent / "shared" / "data" / "policyqa" / "dev.json.gz"
RESULTS = REPO_ROOT / "bench" / "monitoring"  # committed: the figures docs/monitoring.md quotes


def machine() -> str:
    from train.hardware import cpu_description

    return cpu_description()


def server(name: str, model: Path, backend: str, extra: dict[str, str]) -> Server:
    env = {"QA_MODEL_DIR": str(model), "QA_BACKEND": backend, "QA_THREADS": "1", "QA_MODEL_LANES": "0", **extra}
    return Server(name, Path(sys.executable), "serve.wsgi:app", env, workers=1, threads=1)


def cost(args) -> dict:
    examples = load_examples(args.data, args.n, seed=7)
    servers = {"with": server("metrics-on", args.model, args.backend, {"QA_MODEL_METRICS": "1"}),
               "without": server("metrics-off", args.model, args.backend, {"QA_MODEL_METRICS": "0"})}
    latencies: dict[str, list[float]] = {name: [] for name in servers}
    try:
        for s in servers.values():
            s.start()
        clients = {name: Client(s.port) for name, s in servers.items()}
        for client in clients.values():  # warm-up, not measured
            for e in examples[:20]:
                client.ask(e.question, e.context)
        rng = random.Random(11)
        for _ in range(args.rounds):
            for e in examples:
                order = list(clients)
                rng.shuffle(order)  # which server goes first for this question
                for name in order:
                    began = time.perf_counter()
                    clients[name].ask(e.question, e.context)
                    latencies[name].append((time.perf_counter() - began) * 1000)
        metrics_text = scrape(f"http://127.0.0.1:{servers['with'].port}")
    finally:
        for s in servers.values():
            s.stop()
    summary = {name: {"requests": len(v), "p50_ms": round(percentile(v, 0.5), 3),
                      "mean_ms": round(statistics.fmean(v), 3)} for name, v in latencies.items()}
    summary["cost_p50_pct"] = round(100 * (summary["with"]["p50_ms"] / summary["without"]["p50_ms"] - 1), 2)
    summary["cost_mean_pct"] = round(100 * (summary["with"]["mean_ms"] / summary["without"]["mean_ms"] - 1), 2)
    signals = sorted({line.split("{")[0].split(" ")[0] for line in metrics_text.splitlines()
                      if line.startswith(("qa_answer", "qa_question", "qa_context", "qa_windows", "qa_abstention",
                                          "qa_low_confidence"))})
    return {"mode": "cost", "model": str(args.model), "backend": args.backend, "questions": args.n,
            "rounds": args.rounds, "machine": machine(), "date": time.strftime("%Y-%m-%d"), **summary,
            "model_metric_series": signals}


def drift(args) -> dict:
    in_domain = load_examples(args.data, args.n, seed=7)
    out_of_domain = load_examples(args.out_of_domain, args.n, seed=7)
    s = server("drift", args.model, args.backend, {})
    report = {"mode": "drift", "model": str(args.model), "backend": args.backend, "questions": args.n,
              "in_domain_file": str(args.data), "out_of_domain_file": str(args.out_of_domain),
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    try:
        s.start()
        url = f"http://127.0.0.1:{s.port}"
        client = Client(s.port)
        for e in in_domain:
            client.ask(e.question, e.context)
        report["in_domain"] = check(url, args.model)
        print(render(report["in_domain"]))
        before, _ = live_profile(scrape(url))
        for e in out_of_domain:
            client.ask(e.question, e.context)
        after, versions = live_profile(scrape(url))
        reference = Profile.read(args.model / REFERENCE_PROFILE_FILE)
        report["out_of_domain"] = {"url": url, "reference": str(args.model / REFERENCE_PROFILE_FILE),
                                   "versions": versions, "interval_s": None,
                                   "signals": compare(reference, difference(after, before))}
        print(render(report["out_of_domain"]))
    finally:
        s.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("cost", "drift"))
    parser.add_argument("--model", type=Path, default=REPO_ROOT / SHIPPED_MODEL_DIR)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--data", type=Path, default=DEV)
    parser.add_argument("--out-of-domain", type=Path, default=POLICYQA_DEV)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    args.n = args.n or (400 if args.mode == "cost" else 600)
    report = cost(args) if args.mode == "cost" else drift(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.mode}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.mode == "cost":
        print(json.dumps({k: report[k] for k in ("with", "without", "cost_p50_pct", "cost_mean_pct", "machine")},
                         indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
