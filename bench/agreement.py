"""How often two backends give the same answer: int8 against fp32 on SQuAD dev questions.

    python -m bench.agreement --model DIR [--n 500] [--a onnx-int8] [--b onnx-fp32]

Prints (and with --out writes) the fraction of identical answers, the F1 of A's answers
taking B's as the reference, and each backend's EM/F1 against the gold answers. Useful before
a model is trained (a random QA head has no meaningful gold F1, but agreement still shows how
much quantisation moves the argmax) and as a quick check after.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.run import DEFAULT_DATA, load_examples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--a", default="onnx-int8")
    parser.add_argument("--b", default="onnx-fp32")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from qa.engine import QAEngine
    from train.metrics.squad_v1 import compute_score

    examples = load_examples(args.data, args.n, args.seed)
    questions, contexts = [e.question for e in examples], [e.context for e in examples]
    answers = {}
    for name in (args.a, args.b):
        engine = QAEngine.from_model_dir(args.model, backend=name)
        found = engine.answer_many(questions, contexts)
        answers[name] = {e.id: (a[0].text if a else "") for e, a in zip(examples, found, strict=True)}
    a, b = answers[args.a], answers[args.b]
    gold = {e.id: e.answers for e in examples}
    report = {
        "model": str(args.model),
        "questions": len(examples),
        "identical_answers": round(sum(a[k] == b[k] for k in a) / len(a), 4),
        f"f1_of_{args.a}_against_{args.b}": round(compute_score({k: [v] for k, v in b.items()}, a)["f1"], 2),
        args.a: {k: round(v, 2) for k, v in compute_score(gold, a).items()},
        args.b: {k: round(v, 2) for k, v in compute_score(gold, b).items()},
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
