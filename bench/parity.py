"""Parity with the real thing: `qa.QuestionAnswerer` against transformers 4.57's question-answering pipeline.

    python -m bench.parity --model DIR [--n 1000] [--data dev-v1.1.json.gz] [--out bench/parity.json]

Both load the same weights in fp32 on torch and answer the first N questions of the dev file in three
settings (the defaults; top_k=3; doc_stride=64 with max_seq_len=256). The pipeline runs in
.venv-baseline (`make bench-setup`) through bench/parity_baseline.py. For each setting it reports the
share of identical top answers (text, and text with start/end), every kind of difference with a
count and an example, and each side's EM/F1 against the gold answers. The scores are not compared:
ours is a softmax over the n-best spans, the pipeline's a product of start and end probabilities
(see qa/pipeline.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.run import BASELINE_PYTHON, BENCH_DIR, DEFAULT_DATA

SETTINGS = {
    "defaults": {},
    "top_k=3": {"top_k": 3},
    "doc_stride=64, max_seq_len=256": {"doc_stride": 64, "max_seq_len": 256},
}
BASELINE_SCRIPT = BENCH_DIR / "parity_baseline.py"


def difference_kind(ours: dict, theirs: dict) -> str:
    """How one top answer differs from the pipeline's (None: that side gave no answer)."""
    if ours is None or theirs is None:
        return "no answer from " + ("both" if ours is theirs else "ours" if ours is None else "the pipeline")
    if ours["answer"] == theirs["answer"]:
        return "identical" if (ours["start"], ours["end"]) == (theirs["start"], theirs["end"]) else \
            "same text at another offset"
    if ours["start"] < theirs["end"] and theirs["start"] < ours["end"]:
        if ours["start"] <= theirs["start"] and theirs["end"] <= ours["end"]:
            return "overlapping: ours is longer"
        if theirs["start"] <= ours["start"] and ours["end"] <= theirs["end"]:
            return "overlapping: ours is shorter"
        return "overlapping: shifted"
    return "another span"


def compare(pairs: list[dict], ours: dict[str, list[dict]], theirs: dict[str, list[dict]]) -> dict:
    kinds: Counter[str] = Counter()
    examples: dict[str, dict] = {}
    same_lists = 0
    for pair in pairs:
        a, b = ours[pair["id"]], theirs[pair["id"]]
        same_lists += [x["answer"] for x in a] == [x["answer"] for x in b]
        kind = difference_kind(a[0] if a else None, b[0] if b else None)
        kinds[kind] += 1
        if kind != "identical" and kind not in examples:
            examples[kind] = {"id": pair["id"], "question": pair["question"],
                              "ours": a[0] if a else None, "pipeline": b[0] if b else None}
    n = len(pairs)
    return {
        "questions": n,
        "identical_answer_text": round((kinds["identical"] + kinds["same text at another offset"]) / n, 4),
        "identical_start_end": round(kinds["identical"] / n, 4),
        "identical_answer_lists": round(same_lists / n, 4),
        "kinds": dict(kinds.most_common()),
        "examples": examples,
    }


def gold_scores(pairs: list[dict], answers: dict[str, list[dict]]) -> dict:
    from train.metrics.squad_v1 import compute_score

    gold = {p["id"]: p["answers"] for p in pairs}
    top = {i: a[0]["answer"] if a else "" for i, a in answers.items()}
    return {k: round(v, 2) for k, v in compute_score(gold, top).items()}


def run_ours(model: Path, pairs: list[dict], threads: int | None) -> tuple[dict, dict]:
    from qa import QuestionAnswerer

    answerer = QuestionAnswerer.from_model_dir(model, backend="torch", threads=threads)
    results, seconds = {}, {}
    questions, contexts = [p["question"] for p in pairs], [p["context"] for p in pairs]
    for name, kwargs in SETTINGS.items():
        started = time.perf_counter()
        out = answerer(question=questions, context=contexts, **kwargs)
        seconds[name] = round(time.perf_counter() - started, 1)
        out = [out] if len(pairs) == 1 or not isinstance(out, list) else out  # one pair: the pipeline's bare result
        results[name] = {p["id"]: (a if isinstance(a, list) else [a]) for p, a in zip(pairs, out, strict=True)}
    return results, seconds


def run_pipeline(model: Path, pairs: list[dict], python: Path, threads: int | None) -> tuple[dict, float]:
    if not python.exists():
        raise SystemExit(f"no baseline interpreter at {python}; run `make bench-setup` first")
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job.write_text(json.dumps({"pairs": pairs, "settings": SETTINGS}), encoding="utf-8")
        command = [str(python), str(BASELINE_SCRIPT), "--model", str(model), "--inputs", str(job), "--out", str(out)]
        started = time.perf_counter()
        subprocess.run(command + (["--threads", str(threads)] if threads else []), check=True)
        return json.loads(out.read_text(encoding="utf-8")), round(time.perf_counter() - started, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--baseline-python", type=Path, default=BASELINE_PYTHON)
    parser.add_argument("--threads", type=int, help="torch threads on each side (default: all cores)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "parity.json")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")

    from train.data import load_squad

    examples = load_squad(args.data)[: args.n]  # the first N, in file order
    pairs = [{"id": e.id, "question": e.question, "context": e.context, "answers": list(e.answer_texts)}
             for e in examples]
    ours, our_seconds = run_ours(args.model, pairs, args.threads)
    theirs, pipeline_seconds = run_pipeline(args.model, [{k: p[k] for k in ("id", "question", "context")}
                                                         for p in pairs], args.baseline_python, args.threads)
    report = {
        "model": str(args.model), "data": str(args.data), "questions": len(pairs),
        "seconds": {"ours": our_seconds, "pipeline_all_settings": pipeline_seconds},
        "settings": {
            name: {"parameters": kwargs, **compare(pairs, ours[name], theirs[name]),
                   "ours_gold": gold_scores(pairs, ours[name]), "pipeline_gold": gold_scores(pairs, theirs[name])}
            for name, kwargs in SETTINGS.items()
        },
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    # The file keeps ids and offsets only: SQuAD text (questions, answers) must not be committed.
    args.out.write_text(json.dumps(without_text(report), indent=2) + "\n", encoding="utf-8")
    return 0


def without_text(report: dict) -> dict:
    redacted = json.loads(json.dumps(report))
    for setting in redacted["settings"].values():
        for example in setting["examples"].values():
            example.pop("question", None)
            for side in ("ours", "pipeline"):
                if example.get(side):
                    example[side].pop("answer", None)
    return redacted


if __name__ == "__main__":
    sys.exit(main())
