"""Model-call latency of each served graph on one window, at 1 and all threads: which backend is fastest here.

    python -m bench.window_latency --model DIR [--tokens 176] [--runs 60]

Builds each backend as the service does (qa/backends.py) for every graph the directory has
(onnx-fp32, onnx-int8, openvino-int8) and times one window of TOKENS tokens: mean and median of
RUNS calls after 5 warm-up calls. This is the figure behind `auto`'s CPU rule (docs/serving.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from qa.backends import GRAPH_FILES, load_backend, usable_cores

WARMUP_CALLS = 5


def one_window(tokens: int, question_tokens: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    token_type_ids = np.zeros((1, tokens), dtype=np.int64)
    token_type_ids[0, question_tokens:] = 1
    return {
        "input_ids": rng.integers(1000, 20000, size=(1, tokens), dtype=np.int64),
        "attention_mask": np.ones((1, tokens), dtype=np.int64),
        "token_type_ids": token_type_ids,
    }


def time_backend(backend, inputs: dict[str, np.ndarray], runs: int) -> dict:
    feed = {name: inputs[name] for name in backend.input_names}
    for _ in range(WARMUP_CALLS):
        backend(feed)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        backend(feed)
        times.append((time.perf_counter() - began) * 1000)
    return {"mean_ms": round(statistics.fmean(times), 2), "median_ms": round(statistics.median(times), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.window_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--tokens", type=int, default=176)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args(argv)
    from train.hardware import cpu_description

    inputs = one_window(args.tokens)
    rows = []
    for threads in sorted({1, usable_cores()}):
        for name, graph in GRAPH_FILES.items():
            if not (args.model / graph).is_file():
                continue
            figures = time_backend(load_backend(name, args.model, threads=threads), inputs, args.runs)
            rows.append({"backend": name, "threads": threads, **figures})
            print(f"{name:<14} {threads} thread(s): mean {figures['mean_ms']:.2f} ms, "
                  f"median {figures['median_ms']:.2f} ms", flush=True)
    print(json.dumps({"cpu": cpu_description(), "tokens": args.tokens, "runs": args.runs, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
