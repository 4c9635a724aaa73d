"""The reference profile of a model: its behaviour over dev, binned as the service bins it live.

    python -m train.profile --model DIR [--data DEV] [--backend B] [--limit N]

Asks every dev question against its own paragraph twice through the served engine: as a default
request (the answer-score, answer-length, token and window histograms, and the low-confidence
rate) and with handle_impossible_answer (the abstention rate). Writes DIR/reference_profile.json,
which `make drift` (serve/drift.py) compares live /metrics with. Exit 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from qa.engine import QAEngine
from qa.errors import ModelLoadError
from qa.files import file_sha256
from qa.model_dir import REFERENCE_PROFILE_FILE
from qa.monitoring import Profile
from train.cli import positive_int, run_stage
from train.config import ConfigError, model_config
from train.data import SquadFormatError, load_squad
from train.hardware import cpu_description


def write_profile(model_dir: str | Path, data_file: str | None = None, backend: str = "auto",
                  limit: int | None = None) -> Profile:
    model_dir = Path(model_dir)
    data_file = data_file or model_config(model_dir).data.validation_file
    if not data_file:
        raise ConfigError(str(model_dir), "data.validation_file", "not set; pass --data")
    examples = load_squad(data_file)[:limit]
    engine = QAEngine.from_model_dir(model_dir, backend=backend)
    questions, contexts = [e.question for e in examples], [e.context for e in examples]
    default = [ranked[0] for ranked in engine.answer_many(questions, contexts) if ranked]
    abstaining = [ranked[0] for ranked in engine.answer_many(questions, contexts, handle_impossible_answer=True)
                  if ranked]
    source = {"data_file": str(data_file), "data_sha256": file_sha256(data_file), "questions": len(examples),
              "backend": engine.backend.name, "low_confidence_score": engine.params.low_confidence_score,
              "null_threshold": engine.params.null_threshold, "machine": cpu_description(),
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    profile = Profile.of_answers(default, False, engine.params.low_confidence_score, source)
    profile.rates["abstention"] = Profile.of_answers(abstaining, True, 0.0).rates["abstention"]
    profile.write(model_dir / REFERENCE_PROFILE_FILE)
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="SQuAD file (default: the model's validation file, i.e. dev)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=positive_int, default=None)
    args = parser.parse_args(argv)

    def stage() -> None:
        profile = write_profile(args.model, args.data, args.backend, args.limit)
        print(json.dumps({"rates": profile.rates, "source": profile.source}, indent=2))

    return run_stage(stage, (ConfigError, ModelLoadError, SquadFormatError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
