"""Adapt the champion to a domain, and promote it only if it gained there without forgetting SQuAD.

    python -m train.adapt --config configs/adapt.yaml --data DOMAIN.json --dev DOMAIN-DEV.json
                          [--champion DIR | models:/NAME@ALIAS] [--out DIR] [--resume] [--max-minutes N]
                          [--judge-only] [--backend B]
    make adapt DATA=domain.json DEV=domain-dev.json [CONFIG=configs/adapt.yaml] [CHAMPION=] [RESUME=1]

1. The starting weights are the champion's (the registry's alias holder, else --champion, else the
   shipped model), never the base model's; the run is tracked in MLflow like any training, and the
   new registry version records the champion as its parent.
2. It trains on DATA (SQuAD JSON, e.g. from `make feedback-export`) with SQuAD train replayed beside
   it (data.replay_fraction questions per domain question; the champion's held-out articles stay
   out), time-boxed and resumable like `make train`.
3. It is judged twice against the champion, on the same questions and backend (adapt.backend):
   - on DEV: the paired bootstrap of per-question F1 must lie wholly above 0 (gate.champion: better);
   - on SQuAD v1.1 dev: F1 may fall at most adapt.max_squad_f1_drop points below the champion's.
   Both verdicts go into OUT/gate.json ("domain", "squad"); the alias moves only when both pass.
--judge-only skips training and judges --out again (the packaged copy, as shipped), recording both
verdicts in its gate.json; the registry is told as after training.
Exit 0 promoted (or interim model saved by the time box), 1 refused, 2 error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from qa.files import repository_path
from qa.model_dir import ADAPT_CONFIG_FILE, HELDOUT_FILE, METRICS_FILE, SHIPPED_MODEL_DIR, WEIGHTS_FILE
from train.cli import EXIT_OK, EXIT_REFUSED, run_stage
from train.config import ConfigError, ExperimentConfig, GateConfig, expand_env, load_config
from train.data import SquadFormatError
from train.gate import Champion, GateResult, format_table, gate_model, record_gate
from train.model_source import ModelSourceError
from train.tracking import TrackingError, champion_of, register_verdict, resolve_version, tracking_enabled


def find_starting_champion(config: ExperimentConfig, given: str | None) -> Champion:
    """--champion, else the registry's alias holder (of config.tracking.registered_model), else the shipped model."""
    if given and given.startswith("models:/"):
        directory, version = resolve_version(given)
        return Champion(directory, version, given)
    if given:
        if not Path(given).is_dir():
            raise ValueError(f"--champion {given}: no such directory")
        return Champion(Path(given))
    if tracking_enabled() and config.tracking.registered_model:
        found = champion_of(config, SHIPPED_MODEL_DIR)
        if found is not None:
            return Champion(found[0], found[1], f"models:/{config.tracking.registered_model}@{config.tracking.alias}")
    return Champion(Path(SHIPPED_MODEL_DIR))


def adapted_config(base: ExperimentConfig, champion: Champion, data: str, dev: str, out: Path) -> ExperimentConfig:
    """The run's config: the champion's weights, the domain's files, the champion's held-out articles."""
    heldout = champion.directory / HELDOUT_FILE
    config = dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, name_or_path=repository_path(champion.directory),
                                  expected_sha256=None),
        data=dataclasses.replace(base.data, train_file=data, validation_file=dev, dataset_name=None,
                                 heldout_articles_file=repository_path(heldout) if heldout.is_file() else None),
        training=dataclasses.replace(base.training, output_dir=str(out)),
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / ADAPT_CONFIG_FILE  # the file the run (and its card and gate) names as its config
    path.write_text(f"# Written by python -m train.adapt from {base.source}\n"
                    + yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return load_config(path)


def mix_with_champion(out: Path, champion: Path, share: float, data: str, backend: str) -> dict:
    """Weight-space ensemble: OUT's weights become (1 - share) * OUT's + share * the champion's (in
    float32), and OUT/metrics.json is scored again on `data`. Done once: the metrics record it."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from train.evaluate import evaluate_model

    metrics_file = out / METRICS_FILE
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    if "weight_ensemble" in metrics:
        return metrics
    adapted, theirs = load_file(out / WEIGHTS_FILE), load_file(champion / WEIGHTS_FILE)
    if adapted.keys() != theirs.keys() or any(adapted[k].shape != theirs[k].shape for k in adapted):
        raise ValueError(f"adapt.champion_weight_share: {champion / WEIGHTS_FILE} does not hold the same tensors "
                         f"as {out / WEIGHTS_FILE}")
    mixed = {k: ((1.0 - share) * v.astype(np.float32) + share * theirs[k].astype(np.float32)).astype(v.dtype)
             if v.dtype.kind == "f" else v for k, v in adapted.items()}
    save_file(mixed, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    _, scores = evaluate_model(out, data, backend)
    before = {k: metrics[k] for k in ("exact_match", "f1")}
    metrics.update({k: scores[k] for k in ("exact_match", "f1", "questions", "elapsed_s", "backend")})
    metrics["weight_ensemble"] = {"champion": repository_path(champion), "champion_share": share, "before": before}
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(f"weights mixed with the champion's (share {share:g}): {data} F1 {before['f1']:.2f} -> "
          f"{scores['f1']:.2f}", flush=True)
    return metrics


def judge(out: Path, config: ExperimentConfig, champion: Champion) -> tuple[GateResult, GateResult]:
    """(domain verdict, SQuAD verdict), both against the champion."""
    champion_ref = champion.uri or str(champion.directory)
    domain = gate_model(out, data=config.data.validation_file, backend=config.adapt.backend, champion=champion_ref,
                        config=config)
    squad_gate = GateConfig(exact_match=0.0, f1=0.0, champion="off",
                            max_f1_drop_vs_champion=config.adapt.max_squad_f1_drop)
    squad_config = dataclasses.replace(config, gate=squad_gate)
    squad = gate_model(out, data=expand_env(config.adapt.squad_validation_file), backend=config.adapt.backend,
                       champion=champion_ref, config=squad_config)
    return domain, squad


def adapt(config_file: str, data: str, dev: str, champion: str | None = None, out: str | None = None,
          resume: bool = False, max_minutes: float | None = None, judge_only: bool = False,
          backend: str | None = None) -> int:
    base = load_config(config_file)
    if backend:
        base = dataclasses.replace(base, adapt=dataclasses.replace(base.adapt, backend=backend))
    start = find_starting_champion(base, champion)
    out_dir = Path(out or base.training.output_dir)
    if judge_only:  # e.g. the packaged (fp16) copy of an adapted model, judged again as shipped
        if not (out_dir / METRICS_FILE).is_file():
            raise ValueError(f"--judge-only: {out_dir} holds no {METRICS_FILE}; adapt into it first")
        config = dataclasses.replace(base, data=dataclasses.replace(base.data, train_file=data, validation_file=dev))
    else:
        from train.train import run as train_run

        config = adapted_config(base, start, data, dev, out_dir)
        print(f"adapting {start.uri or start.directory} on {data} (dev {dev}) into {out_dir}", flush=True)
        train_run(config, resume=resume, max_minutes=max_minutes)
        metrics = json.loads((out_dir / METRICS_FILE).read_text(encoding="utf-8"))
        if not metrics.get("training", {}).get("complete"):
            print(f"interim model in {out_dir}: resume with make adapt ... RESUME=1; not judged yet")
            return EXIT_OK
        if config.adapt.champion_weight_share:
            mix_with_champion(out_dir, start.directory, config.adapt.champion_weight_share,
                              config.data.validation_file, config.adapt.backend)
    domain, squad = judge(out_dir, config, start)
    for name, result in (("domain", domain), ("squad", squad)):
        print(f"\n{name} verdict ({result.metrics.get('questions')} questions of {result.metrics.get('data_file')}):")
        if result.difference is not None:
            print(result.difference.summary())
        print(format_table(result.checks))
        record_gate(out_dir, result, key=f"adapt-{name}")
    passed = domain.passed and squad.passed
    failures = [f"{name}: {c.metric} {c.measured:.2f} vs {c.threshold:.2f}" for name, result in
                (("domain", domain), ("squad", squad)) for c in result.checks if not c.passed]
    print("PROMOTED: both verdicts pass" if passed else "REFUSED: " + "; ".join(failures))
    try:
        entry = register_verdict(out_dir, config, "adapt", passed, failures, parent_version=start.version)
        if entry:
            print(f"registry: {entry['name']} version {entry['version']}, parent {start.version}; alias "
                  f"{entry['alias'] or 'not moved'}")
    except TrackingError as exc:
        print(f"warning: the registry was not updated: {exc}", file=sys.stderr)
    return EXIT_OK if passed else EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/adapt.yaml")
    parser.add_argument("--data", required=True, help="the domain's training questions (SQuAD JSON)")
    parser.add_argument("--dev", required=True, help="the domain's held-out questions (SQuAD JSON)")
    parser.add_argument("--champion", help="start from this directory or registry URI (default: the champion)")
    parser.add_argument("--out", help="output directory (default: the config's training.output_dir)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--judge-only", action="store_true",
                        help="no training: judge --out (an adapted model, e.g. its packaged copy) against the champion")
    parser.add_argument("--backend", help="the backend both verdicts are measured on (default: the config's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stage(lambda: adapt(args.config, args.data, args.dev, args.champion, args.out, args.resume,
                                   args.max_minutes, args.judge_only, args.backend),
                     (ConfigError, SquadFormatError, ModelSourceError, FileNotFoundError, TrackingError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
