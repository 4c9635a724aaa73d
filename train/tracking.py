"""Experiment tracking and the model registry, through MLflow.

    python -m train.tracking log MODEL_DIR       # log a model directory trained without tracking as a run
    python -m train.tracking resolve models:/NAME@ALIAS   # print the local directory of a registered version

The store is MLFLOW_TRACKING_URI when set (a tracking server, or any store MLflow takes), else the
embedded sqlite file outputs/mlflow.db with artifacts in outputs/mlartifacts. DISABLE_MLFLOW_INTEGRATION=TRUE
(the Hugging Face Trainer's own switch) turns tracking off.

- `training_run` owns one MLflow run per output directory. The Trainer's MLflowCallback logs the
  curve into it; the run id is saved in DIR/mlflow_run.json, so a resumed training continues the same run.
- `log_result` adds the final EM/F1, the training figures and the model directory's small files. The
  weights are logged by reference (path and sha256), not copied: they are 44-90 MB per session.
- `register_verdict` (called by `make gate`) adds the gated directory as a model version, tags it
  with the verdict, and moves the alias (default `champion`) to it only when the gate passed.

A store that cannot be reached or written stops training before its first step, with the store's
URI in the message (`TrackingError`); nothing is trained without its record.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.backends import INT8_BACKENDS
from qa.files import file_sha256, write_json
from qa.model_dir import (
    CALIBRATION_FILE,
    CARD_FILE,
    CONFIG_FILE,
    GATE_RECORD,
    HELDOUT_FILE,
    INFERENCE_PARAMS_FILE,
    METRICS_FILE,
    SESSIONS_FILE,
    TRACKING_RUN_FILE,
    TRAIN_CONFIG_FILE,
    TRAINING_CURVE_FILE,
    TRAINING_LOG_FILE,
    WEIGHTS_FILE,
)
from train.cli import run_stage
from train.config import ConfigError, ExperimentConfig, model_config

logger = logging.getLogger(__name__)

DEFAULT_STORE = Path("outputs/mlflow.db")
DEFAULT_ARTIFACTS = Path("outputs/mlartifacts")
# The model directory's files that travel with its run; the weights are referenced, not copied.
RUN_ARTIFACTS = (METRICS_FILE, INFERENCE_PARAMS_FILE, CONFIG_FILE, TRAIN_CONFIG_FILE, TRAINING_LOG_FILE,
                 TRAINING_CURVE_FILE, SESSIONS_FILE, HELDOUT_FILE, CALIBRATION_FILE, GATE_RECORD, CARD_FILE)
_TRUE = {"1", "TRUE", "YES", "ON"}
_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))")


class TrackingError(RuntimeError):
    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"MLflow tracking store {uri}: {problem}")


def tracking_enabled() -> bool:
    return os.environ.get("DISABLE_MLFLOW_INTEGRATION", "").strip().upper() not in _TRUE


def store_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE.resolve()}"


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a local sqlite store go beside it (MLflow's own default is ./mlruns of the cwd)."""
    database = _sqlite_file(uri)
    if database is None:
        return None
    artifacts = DEFAULT_ARTIFACTS if database == DEFAULT_STORE.resolve() else database.parent / "mlartifacts"
    return artifacts.resolve().as_uri()


def _connect(uri: str):
    """mlflow pointed at `uri`, with the store checked by a real query."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        database = _sqlite_file(uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        mlflow.search_experiments(max_results=1)
    except Exception as exc:  # the store's own errors differ by kind (sqlalchemy, HTTP, OS)
        raise TrackingError(uri, f"cannot be reached or written ({type(exc).__name__}: {exc}). Point "
                                 "MLFLOW_TRACKING_URI at a writable store, or set DISABLE_MLFLOW_INTEGRATION=TRUE "
                                 "to train without tracking") from None
    return mlflow


def check_store() -> None:
    """Fails fast (TrackingError) when tracking is on and its store cannot be reached or written:
    called before data loading, so a bad store costs seconds, not the minutes of building features."""
    if tracking_enabled():
        _connect(store_uri())


def _experiment_id(mlflow, name: str, uri: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_location(uri))


def flat_params(config: ExperimentConfig) -> dict[str, str]:
    """The config as dotted MLflow parameters, e.g. training.learning_rate."""
    params = {}
    for section, values in config.to_dict().items():
        for key, value in values.items():
            params[f"{section}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return {k: v[:MAX_PARAM_VAL_LENGTH] for k, v in params.items()}


def saved_run(model_dir: Path, uri: str) -> str | None:
    """The run id in DIR/mlflow_run.json when it belongs to the store at `uri`."""
    try:
        saved = json.loads((model_dir / TRACKING_RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("tracking_uri") != uri:
        return None
    return saved.get("run_id")


def save_run(model_dir: Path, uri: str, experiment: str, run_id: str) -> None:
    """DIR/mlflow_run.json: the run that trained (or logged) the directory, read back by `saved_run`."""
    write_json(model_dir / TRACKING_RUN_FILE, {"tracking_uri": uri, "experiment": experiment, "run_id": run_id})


@contextmanager
def training_run(config: ExperimentConfig, out: Path, resume: bool, tags: Mapping[str, str] | None = None,
                 active: bool = True) -> Iterator[str | None]:
    """The MLflow run of a training session: a new one, or on resume the one DIR/mlflow_run.json names.

    Yields the run id (None when tracking is off or on a non-zero DDP rank). The run ends FINISHED,
    KILLED on Ctrl-C, FAILED on an error.
    """
    if not (active and tracking_enabled()):
        yield None
        return
    uri = store_uri()
    mlflow = _connect(uri)
    run_id = saved_run(out, uri) if resume else None
    new_run = run_id is None
    if resume and new_run:
        logger.warning("%s names no run of %s; this session starts a new MLflow run", out / TRACKING_RUN_FILE, uri)
    try:
        if run_id:
            run = mlflow.start_run(run_id=run_id)
        else:
            run = mlflow.start_run(experiment_id=_experiment_id(mlflow, config.tracking.experiment, uri),
                                   run_name=out.name)
    except Exception as exc:
        raise TrackingError(uri, f"cannot start the run ({type(exc).__name__}: {exc})") from None
    run_id = run.info.run_id
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_run(out, uri, config.tracking.experiment, run_id)
        if new_run:
            mlflow.log_params(flat_params(config))
        if Path(config.source).is_file():  # each session's config (a resume may change the epochs)
            mlflow.log_artifact(config.source, artifact_path="config")
        mlflow.set_tags(dict(tags or {}))
    except Exception as exc:
        mlflow.end_run("FAILED")
        raise TrackingError(uri, f"cannot record run {run_id} ({type(exc).__name__}: {exc})") from None
    logger.info("MLflow run %s in %s (make mlflow-ui to browse it)", run_id, uri)
    # A resumed run keeps its first session's parameters: MLflow refuses to change one, so the
    # Trainer's MLflowCallback is told to log none (its MLFLOW_MAX_LOG_PARAMS).
    saved_limit = os.environ.get("MLFLOW_MAX_LOG_PARAMS")
    if not new_run:
        os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if saved_limit is None:
            os.environ.pop("MLFLOW_MAX_LOG_PARAMS", None)
        else:
            os.environ["MLFLOW_MAX_LOG_PARAMS"] = saved_limit
        mlflow.end_run(status)


def log_result(model_dir: Path, metrics: Mapping[str, Any]) -> None:
    """Into the active run: final EM/F1, the training figures, the directory's small files and a
    reference to its weights. A store error is a TrackingError that says the directory is complete."""
    import mlflow

    try:
        _log_result(mlflow, model_dir, metrics)
    except Exception as exc:  # the store's own errors differ by kind (sqlalchemy, HTTP, OS)
        raise TrackingError(mlflow.get_tracking_uri(), f"the model directory {model_dir} is complete, but its "
                                                       f"figures were not logged ({type(exc).__name__}: {exc}); "
                                                       f"log them with make track MODEL={model_dir}") from None


def _log_result(mlflow, model_dir: Path, metrics: Mapping[str, Any]) -> None:
    training = metrics.get("training", {})
    figures = {key: metrics[key] for key in ("exact_match", "f1", "questions") if key in metrics}
    figures |= {f"training.{key}": training[key] for key in ("global_step", "epochs_done", "train_hours",
                                                             "train_samples_per_second", "train_windows",
                                                             "unanswerable_windows") if key in training}
    step = int(training.get("global_step", 0) or 0)  # each session's figures at the step they describe
    mlflow.log_metrics({k: float(v) for k, v in figures.items() if isinstance(v, (int, float))}, step=step)
    tags = {"model_dir": str(model_dir.resolve()), "eval.backend": str(metrics.get("backend")),
            "eval.data_sha256": str(metrics.get("data_sha256")),
            "training.complete": str(training.get("complete")).lower()}
    if training.get("git_commit"):
        tags["mlflow.source.git.commit"] = training["git_commit"]
    if training.get("train_sha256"):
        tags["data.train_sha256"] = training["train_sha256"]
    if (model_dir / WEIGHTS_FILE).is_file():
        tags["weights_sha256"] = file_sha256(model_dir / WEIGHTS_FILE, decompress_gzip=False)
    mlflow.set_tags(tags)
    for name in RUN_ARTIFACTS:
        if (model_dir / name).is_file():
            mlflow.log_artifact(str(model_dir / name), artifact_path="model")


def log_model_dir(model_dir: str | Path) -> str:
    """Logs a directory trained without tracking (e.g. before this module existed) as a finished run:
    its config as parameters, training_log.json as the curve, then `log_result`. Returns the run id."""
    model_dir = Path(model_dir)
    metrics = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8"))
    config = model_config(model_dir)
    uri = store_uri()
    mlflow = _connect(uri)
    from mlflow.entities import Metric

    existing = saved_run(model_dir, uri)
    if existing and _run_exists(existing):
        return existing  # logged before: a second run would duplicate its record

    with mlflow.start_run(experiment_id=_experiment_id(mlflow, config.tracking.experiment, uri),
                          run_name=model_dir.name) as run:
        mlflow.log_params(flat_params(config))
        log_path = model_dir / TRAINING_LOG_FILE
        history = json.loads(log_path.read_text(encoding="utf-8")) if log_path.is_file() else []
        curve = [Metric(key, float(value), 0, int(entry.get("step", 0))) for entry in history
                 for key, value in entry.items() if key not in ("step", "epoch") and isinstance(value, (int, float))]
        for start in range(0, len(curve), 1000):
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=curve[start:start + 1000])
        mlflow.set_tag("logged_from", "the directory's files after training (python -m train.tracking log)")
        log_result(model_dir, metrics)
    save_run(model_dir, uri, config.tracking.experiment, run.info.run_id)
    return run.info.run_id


def _run_exists(run_id: str) -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def register_verdict(model_dir: str | Path, config: ExperimentConfig, backend: str, passed: bool,
                     failures: Sequence[str], parent_version: int | None = None) -> dict | None:
    """Registers DIR as a version of the config's registered model (the same weights and directory
    reuse their version) and tags it with the verdict and the version it was compared with (its
    parent: the champion it must not fall behind). A pass moves the alias to it unless another
    backend's verdict on it is a refusal (int8 excepted: the service falls back to fp32); a refusal
    takes the alias off it."""
    if not tracking_enabled():
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    model_dir = Path(model_dir).resolve()
    name = config.tracking.registered_model or model_dir.name
    uri = store_uri()
    _connect(uri)
    client = MlflowClient(uri)
    try:
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="Extractive QA models gated by `make gate`")
        weights = file_sha256(model_dir / WEIGHTS_FILE, decompress_gzip=False)
        existing = [v for v in client.search_model_versions(f"name = '{name}'")
                    if v.source == str(model_dir) and v.tags.get("weights_sha256") == weights]
        if existing:
            version = existing[0].version
        else:
            run_id = saved_run(model_dir, uri)
            version = client.create_model_version(name, source=str(model_dir), run_id=run_id,
                                                  tags={"weights_sha256": weights}).version
        if parent_version is not None and str(parent_version) != str(version):
            client.set_model_version_tag(name, version, "parent_version", str(parent_version))
        client.set_model_version_tag(name, version, f"gate.{backend}", "passed" if passed else "refused")
        client.set_model_version_tag(name, version, f"gate.{backend}.reason",
                                     "meets every threshold" if passed else "; ".join(failures))
        alias = config.tracking.alias
        verdicts = {k.removeprefix("gate."): v for k, v in client.get_model_version(name, version).tags.items()
                    if k.startswith("gate.") and not k.endswith(".reason")}
        # An int8 refusal is the designed fallback (the service then runs fp32); any other refusal
        # means the version must not serve.
        blocked = sorted(b for b, verdict in verdicts.items() if verdict == "refused" and b not in INT8_BACKENDS)
        holder = client.get_registered_model(name).aliases.get(alias)
        moved = passed and not blocked
        if moved:
            client.set_registered_model_alias(name, alias, version)
        elif blocked and str(holder) == str(version):
            client.delete_registered_model_alias(name, alias)
    except MlflowException as exc:
        raise TrackingError(uri, f"cannot record the gate's verdict for {name} ({exc.message})") from None
    return {"name": name, "version": int(version), "alias": alias if moved else None,
            "alias_removed": bool(blocked and str(holder) == str(version))}


def resolve(model_uri: str) -> Path:
    """The directory of `models:/NAME@ALIAS` or `models:/NAME/VERSION`, refused when its weights are
    not the ones that were gated (a later training into the same directory)."""
    return resolve_version(model_uri)[0]


def champion_of(config: ExperimentConfig, model_dir: str | Path) -> tuple[Path, int] | None:
    """(directory, version) of the registered model's alias holder (the champion), or None when
    tracking is off or nothing holds the alias yet."""
    if not tracking_enabled():
        return None
    name = config.tracking.registered_model or Path(model_dir).resolve().name
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = store_uri()
    _connect(uri)
    try:
        MlflowClient(uri).get_model_version_by_alias(name, config.tracking.alias)
    except MlflowException:
        return None
    return resolve_version(f"models:/{name}@{config.tracking.alias}")


def resolve_version(model_uri: str) -> tuple[Path, int]:
    """resolve(), with the registry version number."""
    match = _MODEL_URI.fullmatch(model_uri)
    if not match:
        raise ValueError(f"{model_uri!r} is not a registry URI; use models:/NAME@ALIAS or models:/NAME/VERSION")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = store_uri()
    _connect(uri)
    client = MlflowClient(uri)
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        else:
            version = client.get_model_version(match["name"], match["version"])
    except MlflowException as exc:
        raise TrackingError(uri, f"has no {model_uri} ({exc.message})") from None
    source = Path(version.source)
    if not source.is_dir():
        raise TrackingError(uri, f"{model_uri} is version {version.version}, whose directory {source} is not on "
                                 "this machine")
    gated = version.tags.get("weights_sha256")
    if gated and (source / WEIGHTS_FILE).is_file() and file_sha256(source / WEIGHTS_FILE,
                                                                   decompress_gzip=False) != gated:
        raise TrackingError(uri, f"{model_uri} is version {version.version}, but the weights in {source} changed "
                                 "since it was gated; run make gate on it again")
    return source, int(version.version)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    log = commands.add_parser("log", help="log a trained model directory as a finished run")
    log.add_argument("model_dir")
    find = commands.add_parser("resolve", help="print the local directory of models:/NAME@ALIAS")
    find.add_argument("model_uri")
    commands.add_parser("uri", help="print the tracking store's URI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def stage() -> None:
        if args.command == "log":
            print(f"logged {args.model_dir} as run {log_model_dir(args.model_dir)} in {store_uri()}")
        elif args.command == "resolve":
            print(resolve(args.model_uri))
        else:
            print(store_uri())

    from mlflow.exceptions import MlflowException

    return run_stage(stage, (TrackingError, ConfigError, OSError, ValueError, KeyError, MlflowException))


if __name__ == "__main__":
    sys.exit(main())
