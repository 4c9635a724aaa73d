"""The parity check's other side: `transformers.pipeline("question-answering")` (4.57) on a list of pairs.

Runs in .venv-baseline (see bench/requirements-baseline.txt) and imports nothing from this project,
so what it reports is the pipeline's behaviour alone.

    .venv-baseline/bin/python bench/parity_baseline.py --model DIR --inputs in.json --out out.json

`in.json`: {"pairs": [{"id", "question", "context"}], "settings": {name: {pipeline kwargs}}}.
`out.json`: {name: {id: [{"score", "start", "end", "answer"}, ...]}}, every answer as a list.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # fp32 as the project's torch backend loads it (a shipped fp16 file is upcast on both sides).
    model = AutoModelForQuestionAnswering.from_pretrained(args.model, torch_dtype=torch.float32)
    qa = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(args.model), device=-1)
    with open(args.inputs, encoding="utf-8") as handle:
        job = json.load(handle)
    results = {}
    for name, kwargs in job["settings"].items():
        answers = {}
        for pair in job["pairs"]:
            out = qa(question=pair["question"], context=pair["context"], **kwargs)
            answers[pair["id"]] = [
                {"score": float(a["score"]), "start": int(a["start"]), "end": int(a["end"]), "answer": a["answer"]}
                for a in (out if isinstance(out, list) else [out])
            ]
        results[name] = answers
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
