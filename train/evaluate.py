"""Score a model directory on a SQuAD file through the serving engine.

    python -m train.evaluate --model DIR --data dev-v1.1.json.gz --out DIR [--backend auto] [--limit N]

Writes OUT/predictions.json ({question id: answer text}, the official format) and
OUT/metrics.json. The answers come from `qa.engine.QAEngine`, the code the service runs.
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
from qa.files import file_sha256, write_json
from qa.model_dir import METRICS_FILE, PREDICTIONS_FILE
from train.cli import positive_int, run_stage
from train.data import SquadExample, SquadFormatError, load_squad, references
from train.hardware import cpu_description
from train.metrics.squad_v1 import compute_score


def predict(engine: QAEngine, examples: Sequence[SquadExample], show_progress: bool = False) -> dict[str, str]:
    progress = None
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(examples), desc="evaluate", unit="q")
        progress = bar.update
    answers = engine.answer_many([e.question for e in examples], [e.context for e in examples], progress=progress)
    if bar:
        bar.close()
    return {e.id: (best[0].text if best else "") for e, best in zip(examples, answers)}


def score_examples(engine: QAEngine, examples: Sequence[SquadExample], show_progress: bool = False):
    """(predictions, {"exact_match", "f1", "questions", "elapsed_s"})."""
    started = time.perf_counter()
    predictions = predict(engine, examples, show_progress)
    elapsed = time.perf_counter() - started
    scores = compute_score(references(list(examples)), predictions)
    return predictions, {**scores, "questions": len(examples), "elapsed_s": round(elapsed, 2)}


def evaluate_model(
    model_dir: str | Path, data_file: str | Path, backend: str = "auto", limit: int | None = None,
    show_progress: bool = True,
) -> tuple[dict[str, str], dict]:
    examples = load_squad(data_file)
    if limit is not None:
        examples = examples[:limit]
    engine = QAEngine.from_model_dir(model_dir, backend=backend)
    predictions, metrics = score_examples(engine, examples, show_progress)
    metrics.update(
        {
            "model_dir": str(model_dir),
            "backend": engine.backend.name,
            "data_file": str(data_file),
            "data_sha256": file_sha256(data_file),
            "limit": limit,
            "questions_per_s": round(len(examples) / max(metrics["elapsed_s"], 1e-9), 2),
            "hardware": cpu_description(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    return predictions, metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--data", required=True, help="SQuAD v1.1 JSON file (plain or .gz)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--backend", default="auto", help="auto, torch, onnx-fp32, onnx-int8 or openvino-int8")
    parser.add_argument("--limit", type=positive_int, default=None, help="score only the first N questions")
    args = parser.parse_args(argv)

    def stage() -> None:
        predictions, metrics = evaluate_model(args.model, args.data, args.backend, args.limit)
        out = Path(args.out)
        write_json(out / PREDICTIONS_FILE, predictions)
        write_json(out / METRICS_FILE, metrics)
        print(json.dumps({k: metrics[k] for k in ("exact_match", "f1", "questions", "elapsed_s", "backend")}))

    return run_stage(stage, (ModelLoadError, SquadFormatError))


if __name__ == "__main__":
    sys.exit(main())
