"""Refuse a model that does not meet its thresholds.

    python -m train.gate --model DIR [--data FILE | --metrics FILE] [--config CFG] [--backend B]

Thresholds come from --config; else from the config file the model was trained with (its path is in
DIR/metrics.json), so editing that file moves the gate; else from the copy saved in DIR/train_config.yaml.
Scores come from --metrics, or from evaluating the model now on --data (default: the config's
validation file and max_eval_examples). Prints a table and exits 0 on pass, 1 on refusal, 2 on error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.backends import ONNX_FILES, ONNX_INT8
from qa.errors import ModelLoadError
from qa.files import file_sha256, write_json
from qa.model_dir import GATE_RECORD, METRICS_FILE, eval_metrics_file, write_gate_record
from train.cli import positive_int
from train.config import ConfigError, ExperimentConfig, model_config
from train.data import SquadFormatError


@dataclass(frozen=True)
class Check:
    metric: str
    threshold: float
    measured: float
    higher_is_better: bool = True

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.measured >= self.threshold
        return self.measured <= self.threshold


def checks_for(config: ExperimentConfig, metrics: dict, reference_f1: float | None = None) -> list[Check]:
    checks = [
        Check("exact_match", config.gate.exact_match, float(metrics["exact_match"])),
        Check("f1", config.gate.f1, float(metrics["f1"])),
    ]
    if reference_f1 is not None:
        drop = reference_f1 - float(metrics["f1"])
        checks.append(Check("f1_drop_vs_fp32", config.gate.max_int8_f1_drop, round(drop, 4), higher_is_better=False))
    return checks


def same_questions(metrics: dict, reference: dict, reference_path) -> None:
    """The int8-vs-fp32 comparison is only meaningful on the same questions of the same file."""
    for key in ("data_sha256", "questions"):
        if key in metrics and key in reference and metrics[key] != reference[key]:
            raise ValueError(
                f"{reference_path} was scored on different questions ({key} {reference[key]} vs {metrics[key]}); "
                "evaluate both backends on the same data and limit, or pass --reference-metrics"
            )


def format_table(checks: Sequence[Check]) -> str:
    rows = [("metric", "threshold", "measured", "result")]
    for c in checks:
        sign = ">=" if c.higher_is_better else "<="
        rows.append((c.metric, f"{sign} {c.threshold:.2f}", f"{c.measured:.2f}", "pass" if c.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", help="evaluate on this SQuAD file now")
    source.add_argument("--metrics", help="use an existing metrics.json")
    parser.add_argument("--config", help="thresholds from this config instead of the model's own")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--reference-metrics", help="fp32 metrics.json the int8 F1 is compared with")
    args = parser.parse_args(argv)
    model_dir = Path(args.model)
    try:
        config = model_config(model_dir, args.config)
        if args.metrics:
            metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        else:
            from train.evaluate import evaluate_model

            data = args.data or config.data.validation_file
            limit = args.limit if args.limit is not None else (None if args.data else config.data.max_eval_examples)
            if not data:
                raise ConfigError(config.source, "data.validation_file", "not set; pass --data")
            _, metrics = evaluate_model(model_dir, data, args.backend, limit)
            write_json(model_dir / eval_metrics_file(metrics["backend"]), metrics)
        reference_f1 = None
        reference = args.reference_metrics
        if reference is None and metrics.get("backend") == ONNX_INT8 and (model_dir / METRICS_FILE).exists():
            reference = model_dir / METRICS_FILE
        if reference:
            reference_metrics = json.loads(Path(reference).read_text(encoding="utf-8"))
            same_questions(metrics, reference_metrics, reference)
            reference_f1 = float(reference_metrics["f1"])
        checks = checks_for(config, metrics, reference_f1)
    except (ConfigError, ModelLoadError, SquadFormatError, OSError, ValueError, KeyError, TypeError,
            AttributeError) as exc:
        print(f"error: {exc!r}" if isinstance(exc, (KeyError, TypeError, AttributeError)) else f"error: {exc}",
              file=sys.stderr)
        return 2
    passed = all(c.passed for c in checks)
    print(f"gate for {model_dir} ({metrics.get('backend', '?')}, {metrics.get('questions', '?')} questions, "
          f"thresholds from {config.source})")
    print(format_table(checks))
    print("PASSED" if passed else "REFUSED: the model does not meet its thresholds")
    record = {
        "passed": passed,
        "backend": metrics.get("backend"),
        "questions": metrics.get("questions"),
        "checks": [{"metric": c.metric, "threshold": c.threshold, "measured": c.measured, "passed": c.passed}
                   for c in checks],
        "config": config.source,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    graph = model_dir / ONNX_FILES.get(str(metrics.get("backend")), "-")
    if graph.is_file():  # ties an ONNX verdict to these exact bytes (qa.backends.int8_gate_passed)
        record["graph_sha256"] = file_sha256(graph, decompress_gzip=False)
    try:
        write_gate_record(model_dir, str(metrics.get("backend")), record)
    except OSError as exc:
        print(f"warning: could not record the result in {model_dir / GATE_RECORD}: {exc}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
