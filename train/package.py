"""Package a trained directory as the shipped model: fp16 weights, no training leftovers.

    python -m train.package --model outputs/minilm-squad --out models/minilm-l6-squad [--data dev.json.gz]

Writes OUT with the tokenizer, config, qa.json, card, training curve and logs, and model.safetensors
in float16 (half the bytes; the backends compute in float32). Because rounding to fp16 changes the
weights, OUT is exported to ONNX and scored again on the full --data file (default: the training
config's validation file) through the serving engine with the fp32 graph (the export checks it
against torch; it is 2-3x faster to evaluate here), and that is the metrics.json the card and the
gate use. With --predictions FILE (outside OUT: the answers quote the data), those answers are kept
for the gate (`train.gate --metrics OUT/metrics.json --predictions FILE`), which then compares OUT
with the champion without answering every question again. Exit codes: 0 ok, 2 error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.model_dir import (
    ADAPT_CONFIG_FILE,
    CONFIG_FILE,
    EVAL_DIR,
    GATE_RECORD,
    METRICS_FILE,
    ONNX_DIR,
    PREDICTIONS_FILE,
    TRACKING_RUN_FILE,
    TRAIN_CONFIG_FILE,
    WEIGHTS_FILE,
)

# Written by training, never read by serving or the card; predictions.json quotes dev text and
# would put SQuAD excerpts into git; the MLflow run names a local store; adapt's config is
# train_config.yaml again.
LEFTOVERS = ("checkpoint-*", "runs", ONNX_DIR, EVAL_DIR, GATE_RECORD, PREDICTIONS_FILE, "training_args.bin",
             WEIGHTS_FILE, TRACKING_RUN_FILE, ADAPT_CONFIG_FILE)


class PackageError(ValueError):
    pass


def to_float16(src: Path, dest: Path) -> int:
    """Copy a safetensors file with every float32 tensor stored as float16; returns the bytes written."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src))
    converted = {name: (t.astype(np.float16) if t.dtype == np.float32 else t) for name, t in tensors.items()}
    save_file(converted, str(dest), metadata={"format": "pt"})
    return dest.stat().st_size


def package(model_dir: str | Path, out: str | Path, data_file: str | None = None,
            predictions_file: str | Path | None = None) -> dict:
    """Build OUT from MODEL_DIR and score it; returns OUT's metrics. `predictions_file` (not inside
    OUT) receives the answers the metrics were computed from."""
    from qa.backends import ONNX_FP32
    from qa.files import write_json
    from train.card import write_model_card
    from train.config import load_config
    from train.evaluate import evaluate_model
    from train.export import export_model

    model_dir, out = Path(model_dir), Path(out)
    for name in (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE, TRAIN_CONFIG_FILE):
        if not (model_dir / name).is_file():
            raise PackageError(f"{model_dir} is not a trained model directory: {name} is missing")
    source_metrics = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8"))
    config = load_config(model_dir / TRAIN_CONFIG_FILE)
    config.source = source_metrics.get("training", {}).get("config") or config.source
    if predictions_file is not None and Path(predictions_file).resolve().is_relative_to(out.resolve()):
        raise PackageError(f"--predictions {predictions_file}: keep it outside {out}; answers quote the data, "
                           "and the model directory is shipped")
    data_file = data_file or config.data.validation_file
    if not data_file:
        raise PackageError(f"{model_dir}/train_config.yaml: data.validation_file is not set; pass --data")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns(*LEFTOVERS))
    to_float16(model_dir / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    model_config = json.loads((staging / CONFIG_FILE).read_text(encoding="utf-8"))
    model_config["dtype"] = "float16"
    write_json(staging / CONFIG_FILE, model_config)
    export_model(staging, log=lambda _message: None)
    predictions, metrics = evaluate_model(staging, data_file, ONNX_FP32, None)
    metrics["model_dir"] = str(out)
    metrics["training"] = source_metrics.get("training", {})
    for key in ("weight_ensemble", "averaged_checkpoints"):  # how the weights were made, for the card
        if key in source_metrics:
            metrics[key] = source_metrics[key]
    metrics["packaged_from"] = {"model_dir": str(model_dir), "exact_match": source_metrics.get("exact_match"),
                                "f1": source_metrics.get("f1"), "questions": source_metrics.get("questions"),
                                "weights": "float32"}
    write_json(staging / METRICS_FILE, metrics)
    write_model_card(staging, config, metrics)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    if predictions_file is not None:
        write_json(predictions_file, predictions)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained model directory (training.output_dir)")
    parser.add_argument("--out", required=True, help="the shipped directory to (re)write")
    parser.add_argument("--data", help="SQuAD file to score OUT on (default: the config's validation file)")
    parser.add_argument("--predictions", help="keep the answers scored here, for the gate (a file outside OUT)")
    args = parser.parse_args(argv)
    from qa.errors import ModelLoadError
    from train.cli import run_stage
    from train.config import ConfigError
    from train.data import SquadFormatError
    from train.export import ExportError

    def stage() -> None:
        metrics = package(args.model, args.out, args.data, args.predictions)
        size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
        print(json.dumps({"out": args.out, "exact_match": metrics["exact_match"], "f1": metrics["f1"],
                          "questions": metrics["questions"], "bytes": size}))

    return run_stage(stage, (PackageError, ConfigError, SquadFormatError, ModelLoadError, ExportError, OSError))


if __name__ == "__main__":
    sys.exit(main())
