"""Official SQuAD v1.1 EM/F1 of any predictions file.

    python -m train.score --data dev-v1.1.json.gz --predictions predictions.json

Prints {"exact_match": ..., "f1": ...}: the numbers evaluate-v1.1.py prints for the same inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from train.cli import run_stage
from train.data import SquadFormatError, load_squad, references
from train.metrics.squad_v1 import compute_score


def load_predictions(path: str | Path) -> dict[str, str]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: must be an object mapping question id to answer text")
    for qid, answer in raw.items():
        if not isinstance(answer, str):
            raise ValueError(f"{path}: prediction for question {qid!r} must be a string")
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--predictions", required=True)
    args = parser.parse_args(argv)

    def stage() -> None:
        refs = references(load_squad(args.data))
        print(json.dumps(compute_score(refs, load_predictions(args.predictions))))

    return run_stage(stage, (SquadFormatError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
