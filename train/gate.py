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

from qa.backends import GRAPH_FILES, INT8_BACKENDS
from qa.errors import ModelLoadError
from qa.files import write_json
from qa.model_dir import GATE_RECORD, METRICS_FILE, eval_metrics_file, graph_sha256, write_gate_record
from train.cli import EXIT_OK, EXIT_REFUSED, positive_int, run_stage
from train.config import ConfigError, ExperimentConfig, model_config
from train.data import SquadFormatError
from train.hardware import cpu_description
from train.tracking import TrackingError, register_verdict, store_uri


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


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[Check]
    metrics: dict
    config: ExperimentConfig  # the config whose thresholds judged (train.config.model_config)

    def record(self) -> dict:
        """The gate.json entry for this verdict."""
        return {
            "passed": self.passed,
            "backend": self.metrics.get("backend"),
            "questions": self.metrics.get("questions"),
            "checks": [{"metric": c.metric, "threshold": c.threshold, "measured": c.measured, "passed": c.passed}
                       for c in self.checks],
            "config": self.config.source,
            "cpu": cpu_description(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def gate_model(
    model_dir: str | Path,
    data: str | None = None,
    metrics_file: str | None = None,
    config_file: str | None = None,
    backend: str = "auto",
    limit: int | None = None,
    reference_metrics: str | Path | None = None,
) -> GateResult:
    """Judge MODEL_DIR: scores from `metrics_file`, or from evaluating it now on `data` (default: the
    config's validation file and max_eval_examples); an int8 score is also compared with the fp32
    metrics.json of the directory (or `reference_metrics`)."""
    model_dir = Path(model_dir)
    config = model_config(model_dir, config_file)
    if metrics_file:
        metrics = json.loads(Path(metrics_file).read_text(encoding="utf-8"))
    else:
        from train.evaluate import evaluate_model

        source = data or config.data.validation_file
        if limit is None and not data:
            limit = config.data.max_eval_examples
        if not source:
            raise ConfigError(config.source, "data.validation_file", "not set; pass --data")
        _, metrics = evaluate_model(model_dir, source, backend, limit)
        write_json(model_dir / eval_metrics_file(metrics["backend"]), metrics)
    reference_f1 = None
    if reference_metrics is None and metrics.get("backend") in INT8_BACKENDS and (model_dir / METRICS_FILE).exists():
        reference_metrics = model_dir / METRICS_FILE
    if reference_metrics:
        reference = json.loads(Path(reference_metrics).read_text(encoding="utf-8"))
        same_questions(metrics, reference, reference_metrics)
        reference_f1 = float(reference["f1"])
    checks = checks_for(config, metrics, reference_f1)
    return GateResult(all(c.passed for c in checks), checks, metrics, config)


def record_gate(model_dir: str | Path, result: GateResult) -> None:
    """Adds the verdict to DIR/gate.json; an ONNX verdict is tied to the graph's bytes
    (qa.backends.int8_gate_passed serves int8 only while they match)."""
    model_dir = Path(model_dir)
    record = result.record()
    graph = model_dir / GRAPH_FILES.get(str(record["backend"]), "-")
    if graph.is_file():
        record["graph_sha256"] = graph_sha256(graph)
    write_gate_record(model_dir, str(record["backend"]), record)


def promote(model_dir: str | Path, result: GateResult) -> None:
    """The verdict into the MLflow registry: a version tagged with it, the alias moved on a pass."""
    failures = [f"{c.metric} {c.measured:.2f} {'<' if c.higher_is_better else '>'} {c.threshold:.2f}"
                for c in result.checks if not c.passed]
    try:
        entry = register_verdict(model_dir, result.config, str(result.metrics.get("backend")), result.passed,
                                 failures)
    except (TrackingError, OSError) as exc:  # the verdict and its exit code stand; the registry is behind
        print(f"warning: the registry was not updated: {exc}", file=sys.stderr)
        return
    if entry:
        if entry["alias"]:
            alias = f"; alias {entry['alias']!r} now points to it"
        else:
            alias = "; its alias was removed" if entry["alias_removed"] else "; no alias moved"
        print(f"registry: {entry['name']} version {entry['version']} in {store_uri()}{alias}")


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

    def stage() -> int:
        result = gate_model(args.model, args.data, args.metrics, args.config, args.backend, args.limit,
                            args.reference_metrics)
        print(f"gate for {args.model} ({result.metrics.get('backend', '?')}, "
              f"{result.metrics.get('questions', '?')} questions, thresholds from {result.config.source})")
        print(format_table(result.checks))
        print("PASSED" if result.passed else "REFUSED: the model does not meet its thresholds")
        try:
            record_gate(args.model, result)
        except OSError as exc:
            print(f"warning: could not record the result in {Path(args.model) / GATE_RECORD}: {exc}", file=sys.stderr)
        promote(args.model, result)
        return EXIT_OK if result.passed else EXIT_REFUSED

    return run_stage(stage, (ConfigError, ModelLoadError, SquadFormatError, OSError, ValueError, KeyError, TypeError,
                             AttributeError, TrackingError))


if __name__ == "__main__":
    sys.exit(main())
