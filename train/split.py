"""Split a SQuAD-format file by article (title) into two parts, seeded: never a question apart from
its article, so the held-out part's texts are unseen.

    python -m train.split --data FILE --dev-fraction 0.5 --seed 13 --out DIR
    (e.g. PolicyQA dev into an adaptation-train and an adaptation-dev part: docs/adaptation.md)

Writes DIR/train.json and DIR/dev.json (the articles unchanged, in file order) and DIR/split.json
(which titles went where, the seed and the source file's sha256). Exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.files import file_sha256
from train.cli import run_stage
from train.data import SquadFormatError, parse_squad, read_json


def split_file(data: str | Path, dev_fraction: float, seed: int, out: str | Path) -> dict:
    if not 0 < dev_fraction < 1:
        raise ValueError(f"--dev-fraction must be between 0 and 1, got {dev_fraction}")
    raw = read_json(data)
    parse_squad(raw, data)  # every answer checked before anything is written
    titles = [article.get("title", f"article {i}") for i, article in enumerate(raw["data"])]
    if len(set(titles)) < 2:
        raise ValueError(f"{data}: needs at least 2 articles (titles) to split by article")
    dev_titles = set(random.Random(seed).sample(sorted(set(titles)), max(1, round(dev_fraction * len(set(titles))))))
    parts = {"train": [a for a, t in zip(raw["data"], titles) if t not in dev_titles],
             "dev": [a for a, t in zip(raw["data"], titles) if t in dev_titles]}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"source": str(data), "source_sha256": file_sha256(data), "seed": seed, "dev_fraction": dev_fraction}
    for name, articles in parts.items():
        (out / f"{name}.json").write_text(json.dumps({"version": raw.get("version", "1.1"), "data": articles},
                                                     ensure_ascii=False), encoding="utf-8")
        questions = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
        report[name] = {"articles": sorted(a.get("title", "") for a in articles), "questions": questions}
    (out / "split.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    def stage() -> None:
        report = split_file(args.data, args.dev_fraction, args.seed, args.out)
        print(json.dumps({k: (v if k not in ("train", "dev") else {"questions": v["questions"],
                                                                 "articles": len(v["articles"])})
                          for k, v in report.items()}, indent=2))

    return run_stage(stage, (SquadFormatError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
