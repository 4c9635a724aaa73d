"""Refuse a model that does not meet its thresholds, or that is worse than the champion.

    python -m train.gate --model DIR [--data FILE | --metrics FILE [--predictions FILE]] [--config CFG]
                         [--backend B] [--champion DIR | models:/NAME@ALIAS | none]

Thresholds come from --config; else from the config file the model was trained with (its path is in
DIR/metrics.json), so editing that file moves the gate; else from the copy saved in DIR/train_config.yaml.
Scores come from --metrics (with the answers they were computed from: --predictions, else the
predictions.json beside it, else answered again for the champion comparison), or from evaluating
the model now on --data (default: the config's validation file and max_eval_examples). The
absolute thresholds are a floor. Above it, the model is compared with the champion (--champion,
else the registry's alias holder, e.g. models:/minilm-l6-squad@champion) on the same questions and
backend: the paired bootstrap of per-question F1 (train/compare.py) must not lie wholly below 0
(config gate.champion: not_worse; "better" wants it wholly above 0). With gate.min_wrong_context_abstention_pct
set, the model's held-out wrong-context abstention at its served threshold (DIR/calibration.json, written by
`python -m train.calibrate --parts served`) is a floor too. Prints a table and exits 0 on pass, 1 on
refusal, 2 on error.
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
from qa.files import file_sha256, repository_path, write_json
from qa.model_dir import (
    CALIBRATION_FILE,
    GATE_RECORD,
    METRICS_FILE,
    PREDICTIONS_FILE,
    WEIGHTS_FILE,
    eval_metrics_file,
    graph_sha256,
    load_params,
    write_gate_record,
)
from train.cli import EXIT_OK, EXIT_REFUSED, positive_int, run_stage
from train.compare import PairedDifference, paired_difference, per_question_f1
from train.config import ConfigError, ExperimentConfig, model_config
from train.data import SquadFormatError, load_squad, references
from train.hardware import cpu_description
from train.tracking import TrackingError, champion_of, register_verdict, resolve_version, store_uri


@dataclass(frozen=True)
class Check:
    metric: str
    threshold: float
    measured: float
    higher_is_better: bool = True
    strict: bool = False  # measured must beat the threshold, not only reach it

    @property
    def passed(self) -> bool:
        if self.strict:
            return self.measured > self.threshold if self.higher_is_better else self.measured < self.threshold
        if self.higher_is_better:
            return self.measured >= self.threshold
        return self.measured <= self.threshold


@dataclass(frozen=True)
class Champion:
    directory: Path
    version: int | None = None  # its registry version, when it came from the registry
    uri: str | None = None


def champion_checks(config: ExperimentConfig, difference: PairedDifference) -> list[Check]:
    checks = []
    if config.gate.champion == "not_worse":
        checks.append(Check("f1_vs_champion_ci_high", 0.0, difference.ci_high))
    elif config.gate.champion == "better":
        checks.append(Check("f1_vs_champion_ci_low", 0.0, difference.ci_low, strict=True))
    if config.gate.max_f1_drop_vs_champion is not None:
        drop = round(difference.champion_f1 - difference.challenger_f1, 4)
        checks.append(Check("f1_drop_vs_champion", config.gate.max_f1_drop_vs_champion, drop, higher_is_better=False))
    return checks


def find_champion(model_dir: Path, config: ExperimentConfig, given: str | None) -> Champion | None:
    """The model to compare with: `given` (a directory, a registry URI, or "none"), else the registry's
    alias holder. None when there is none, or when it is this very directory with these weights."""
    if given and given.lower() == "none":
        return None
    if given and given.startswith("models:/"):
        directory, version = resolve_version(given)
        champion = Champion(directory, version, given)
    elif given:
        champion = Champion(Path(given))
        if not champion.directory.is_dir():
            raise ValueError(f"--champion {given}: no such directory")
    else:
        try:
            found = champion_of(config, model_dir)
        except TrackingError as exc:  # nothing can be promoted either; the absolute verdict stands
            print(f"warning: no champion comparison, the registry cannot be read: {exc}", file=sys.stderr)
            return None
        if found is None:
            return None
        name = config.tracking.registered_model or model_dir.resolve().name
        champion = Champion(found[0], found[1], f"models:/{name}@{config.tracking.alias}")
    same_dir = champion.directory.resolve() == model_dir.resolve()
    if same_dir and file_sha256(champion.directory / WEIGHTS_FILE) == file_sha256(model_dir / WEIGHTS_FILE):
        return None  # gating the champion itself
    return champion


def compare_with_champion(champion: Champion, predictions: dict[str, str], metrics: dict) -> PairedDifference:
    """The champion on the questions, backend and limit the challenger was scored with."""
    from train.evaluate import evaluate_model

    data_file = metrics.get("data_file")
    if not data_file or not Path(data_file).is_file():
        raise ValueError(f"the champion comparison needs the challenger's data file, got {data_file!r}")
    refs = references(load_squad(data_file)[: metrics.get("limit")])
    challenger = per_question_f1(refs, predictions)
    if "f1" in metrics and abs(float(challenger.mean()) - float(metrics["f1"])) > 0.01:
        raise ValueError(f"the challenger's answers score F1 {challenger.mean():.2f}, its metrics say "
                         f"{float(metrics['f1']):.2f}: they are not the answers those metrics were computed from")
    champion_predictions, champion_metrics = evaluate_model(champion.directory, data_file, str(metrics["backend"]),
                                                            metrics.get("limit"))
    if champion_metrics["backend"] != metrics["backend"]:
        raise ValueError(f"the champion ran on {champion_metrics['backend']}, the challenger on {metrics['backend']}")
    return paired_difference(challenger, per_question_f1(refs, champion_predictions))


def checks_for(config: ExperimentConfig, metrics: dict, reference_f1: float | None = None) -> list[Check]:
    checks = [
        Check("exact_match", config.gate.exact_match, float(metrics["exact_match"])),
        Check("f1", config.gate.f1, float(metrics["f1"])),
    ]
    if reference_f1 is not None:
        drop = reference_f1 - float(metrics["f1"])
        checks.append(Check("f1_drop_vs_fp32", config.gate.max_int8_f1_drop, round(drop, 4), higher_is_better=False))
    return checks


def wrong_context_check(model_dir: Path, floor: float) -> Check:
    """The held-out wrong-context abstention that train.calibrate measured at the threshold now served."""
    calibration_file = model_dir / CALIBRATION_FILE
    remedy = f"run python -m train.calibrate --model {model_dir} --parts served"
    try:
        served = json.loads(calibration_file.read_text(encoding="utf-8"))["served"]
        measured, calibrated_at = float(served["wrong_abstention_pct"]), float(served["null_threshold"])
    except FileNotFoundError:
        raise ValueError(f"{calibration_file}: missing, and gate.min_wrong_context_abstention_pct needs its "
                         f"served.wrong_abstention_pct ({remedy})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{calibration_file}: no served.wrong_abstention_pct and served.null_threshold "
                         f"({type(exc).__name__}: {exc}; {remedy})") from None
    served_threshold = load_params(model_dir).null_threshold
    if abs(calibrated_at - served_threshold) > 1e-6:
        raise ValueError(f"{calibration_file}: served.null_threshold {calibrated_at} is not the threshold "
                         f"{model_dir} serves ({served_threshold}): its figures are stale ({remedy})")
    return Check("wrong_context_abstention_pct", floor, measured)


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
    champion: Champion | None = None
    difference: PairedDifference | None = None

    def record(self) -> dict:
        """The gate.json entry for this verdict."""
        comparison = None
        if self.champion is not None and self.difference is not None:
            comparison = {"champion": repository_path(self.champion.directory), "version": self.champion.version,
                          "uri": self.champion.uri, "rule": self.config.gate.champion, **self.difference.as_dict()}
        return {
            "passed": self.passed,
            "champion": comparison,
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
    champion: str | None = None,
    config: ExperimentConfig | None = None,
    predictions_file: str | Path | None = None,
) -> GateResult:
    """Judge MODEL_DIR: scores from `metrics_file` (with its answers: `predictions_file`, else the
    predictions.json beside it), or from evaluating it now on `data` (default: the config's
    validation file and max_eval_examples); an int8 score is also compared with the fp32
    metrics.json of the directory (or `reference_metrics`), and every score with the champion's on
    the same questions (`champion`, else the registry's)."""
    model_dir = Path(model_dir)
    config = config or model_config(model_dir, config_file)
    floor = config.gate.min_wrong_context_abstention_pct
    abstention = wrong_context_check(model_dir, floor) if floor is not None else None  # before any dev pass
    predictions = None
    if metrics_file:
        metrics = json.loads(Path(metrics_file).read_text(encoding="utf-8"))
        answers = Path(predictions_file) if predictions_file else Path(metrics_file).parent / PREDICTIONS_FILE
        if predictions_file or answers.is_file():
            predictions = json.loads(answers.read_text(encoding="utf-8"))
            if not isinstance(predictions, dict):
                raise ValueError(f"{answers}: expected a JSON object of answers by question id")
    else:
        from train.evaluate import evaluate_model

        source = data or config.data.validation_file
        if limit is None and not data:
            limit = config.data.max_eval_examples
        if not source:
            raise ConfigError(config.source, "data.validation_file", "not set; pass --data")
        predictions, metrics = evaluate_model(model_dir, source, backend, limit)
        write_json(model_dir / eval_metrics_file(metrics["backend"]), metrics)
    reference_f1 = None
    if reference_metrics is None and metrics.get("backend") in INT8_BACKENDS and (model_dir / METRICS_FILE).exists():
        reference_metrics = model_dir / METRICS_FILE
    if reference_metrics:
        reference = json.loads(Path(reference_metrics).read_text(encoding="utf-8"))
        same_questions(metrics, reference, reference_metrics)
        reference_f1 = float(reference["f1"])
    checks = checks_for(config, metrics, reference_f1) + ([abstention] if abstention else [])
    # A drop bound compares with the champion even when the bootstrap rule is off.
    compares = config.gate.champion != "off" or config.gate.max_f1_drop_vs_champion is not None
    found = find_champion(model_dir, config, champion) if compares else None
    difference = None
    if found is not None:
        if predictions is None:  # a packaged model keeps no predictions (they quote dev): answer again
            from train.evaluate import evaluate_model

            if not metrics.get("data_file") or not Path(metrics["data_file"]).is_file():
                raise ValueError(f"{metrics_file} names no data file the champion could be compared on")
            predictions, _ = evaluate_model(model_dir, metrics["data_file"], str(metrics["backend"]),
                                            metrics.get("limit"))
        difference = compare_with_champion(found, predictions, metrics)
        checks += champion_checks(config, difference)
    return GateResult(all(c.passed for c in checks), checks, metrics, config, found, difference)


def record_gate(model_dir: str | Path, result: GateResult, key: str | None = None) -> None:
    """Adds the verdict to DIR/gate.json under `key` (default: the backend); an ONNX verdict is tied
    to the graph's bytes (qa.backends.int8_gate_passed serves int8 only while they match)."""
    model_dir = Path(model_dir)
    record = result.record()
    graph = model_dir / GRAPH_FILES.get(str(record["backend"]), "-")
    if graph.is_file():
        record["graph_sha256"] = graph_sha256(graph)
    write_gate_record(model_dir, key or str(record["backend"]), record)


def promote(model_dir: str | Path, result: GateResult) -> None:
    """The verdict into the MLflow registry: a version tagged with it, the alias moved on a pass."""
    failures = [f"{c.metric} {c.measured:.2f} {'<' if c.higher_is_better else '>'} {c.threshold:.2f}"
                for c in result.checks if not c.passed]
    try:
        parent = result.champion.version if result.champion is not None else None
        entry = register_verdict(model_dir, result.config, str(result.metrics.get("backend")), result.passed,
                                 failures, parent_version=parent)
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
    parser.add_argument("--predictions", help="with --metrics: the answers it was scored from (default: the "
                                              "predictions.json beside it)")
    parser.add_argument("--config", help="thresholds from this config instead of the model's own")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=positive_int, default=None)
    parser.add_argument("--reference-metrics", help="fp32 metrics.json the int8 F1 is compared with")
    parser.add_argument("--champion", help="the model to compare with: a directory, models:/NAME@ALIAS, or none "
                                           "(default: the registry's alias holder)")
    args = parser.parse_args(argv)

    def stage() -> int:
        if args.predictions and not args.metrics:
            raise ValueError("--predictions goes with --metrics (with --data the gate answers the questions itself)")
        result = gate_model(args.model, args.data, args.metrics, args.config, args.backend, args.limit,
                            args.reference_metrics, args.champion, predictions_file=args.predictions)
        print(f"gate for {args.model} ({result.metrics.get('backend', '?')}, "
              f"{result.metrics.get('questions', '?')} questions, thresholds from {result.config.source})")
        if result.difference is not None:
            print(f"champion {result.champion.uri or result.champion.directory}: {result.difference.summary()}")
        else:
            print("no champion to compare with: the absolute thresholds alone judge")
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
