"""A model directory: the name of every file in it, its readers and writers, and the start-up check.

    config.json              model architecture (transformers)
    tokenizer.json           fast tokenizer; the only tokenizer file serving reads
    qa.json                  InferenceParams: how the model reads and answers
    model.safetensors        weights (fp32 after training, fp16 once packaged)
    onnx/model.onnx          optimised fp32 graph        (python -m train.export)
    onnx/model.int8.onnx     int8 graph                  (python -m train.export)
    openvino/model.int8.xml  static int8 graph, OpenVINO IR, with its .bin  (python -m train.export_openvino)
    gate.json                gate verdicts by backend    (python -m train.gate)
    metrics.json             EM/F1 of the full evaluation and the training record
    README.md                model card                  (python -m train.card)
    train_config.yaml, training_log.json, training_curve.png, sessions.json,
    heldout_articles.json, predictions.json, eval/metrics-<backend>.json, calibration.json: training
    and evaluation records
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from qa.errors import ModelLoadError
from qa.files import file_sha256, write_json
from qa.params import InferenceParams, InvalidParams

SHIPPED_MODEL_DIR = "models/minilm-l6-squad"  # the model this repository ships (relative to its root)
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
INFERENCE_PARAMS_FILE = "qa.json"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"
ONNX_DIR = "onnx"
ONNX_FP32_FILE = f"{ONNX_DIR}/model.onnx"
ONNX_INT8_FILE = f"{ONNX_DIR}/model.int8.onnx"
ONNX_EXPORT_INFO_FILE = f"{ONNX_DIR}/export.json"  # inputs, opset, fusions and checks of the export
OPENVINO_DIR = "openvino"
OPENVINO_INT8_FILE = f"{OPENVINO_DIR}/model.int8.xml"  # topology; the weights and scales are beside it (.bin)
OPENVINO_EXPORT_INFO_FILE = f"{OPENVINO_DIR}/export.json"  # calibration data, checks and versions
GATE_RECORD = "gate.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
TRAIN_CONFIG_FILE = "train_config.yaml"
TRAINING_LOG_FILE = "training_log.json"
TRAINING_CURVE_FILE = "training_curve.png"
SESSIONS_FILE = "sessions.json"  # one entry per training session (start or resume) of this output_dir
HELDOUT_FILE = "heldout_articles.json"  # train articles kept out of training, for calibration
PREDICTIONS_FILE = "predictions.json"
CALIBRATION_FILE = "calibration.json"  # no-answer threshold and abstention figures (python -m train.calibrate)
# Held-out figures with distractors and with answers removed (python -m train.robustness).
ROBUSTNESS_FILE = "robustness.json"
PREVIOUS_VERSION_FILE = "previous_version.json"  # the headline figures of the version this one replaced
# The model-behaviour distributions over dev that live traffic is compared with (qa/monitoring.py).
REFERENCE_PROFILE_FILE = "reference_profile.json"
TRACKING_RUN_FILE = "mlflow_run.json"  # the MLflow run that trained this directory (train/tracking.py)
ADAPT_CONFIG_FILE = "adapt_config.yaml"  # the config `make adapt` wrote for its run (train/adapt.py)
EVAL_DIR = "eval"  # eval/metrics-<backend>.json, written by the gate
# Weight files in the order a model version is read from them.
WEIGHT_FILES = (WEIGHTS_FILE, ONNX_INT8_FILE, ONNX_FP32_FILE, OPENVINO_INT8_FILE, LEGACY_WEIGHTS_FILE)


def graph_sha256(path: str | Path) -> str:
    """Hex sha256 of a served graph: the file's bytes, and for an OpenVINO .xml also its .bin (the weights)."""
    path = Path(path)
    if path.suffix != ".xml":
        return file_sha256(path, decompress_gzip=False)
    parts = (file_sha256(part, decompress_gzip=False) for part in (path, path.with_suffix(".bin")))
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def eval_metrics_file(backend: str) -> str:
    return f"{EVAL_DIR}/metrics-{backend}.json"


def weight_files(first: str | None = None) -> tuple[str, ...]:
    """WEIGHT_FILES with `first` (a served graph) moved to the front."""
    names = list(WEIGHT_FILES)
    if first in names:
        names.insert(0, names.pop(names.index(first)))
    return tuple(names)


# ---------------------------------------------------------------- qa.json


def load_params(model_dir: str | Path) -> InferenceParams:
    """DIR/qa.json, validated; the defaults when the file is absent (models trained elsewhere)."""
    model_dir = Path(model_dir)
    path = model_dir / INFERENCE_PARAMS_FILE
    if not path.exists():
        return InferenceParams()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} must be a JSON object")
    try:
        return InferenceParams.from_dict(raw)
    except InvalidParams as exc:
        raise ModelLoadError(model_dir, f"{INFERENCE_PARAMS_FILE} field {exc.field!r}: {exc.problem}") from None


def save_params(model_dir: str | Path, params: InferenceParams) -> None:
    from dataclasses import asdict

    write_json(Path(model_dir) / INFERENCE_PARAMS_FILE, asdict(params.validate()))


# ---------------------------------------------------------------- gate.json


def read_gate_records(model_dir: str | Path) -> dict:
    """The gate verdicts by backend; {} when absent or unreadable (not gated)."""
    try:
        records = json.loads((Path(model_dir) / GATE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def write_gate_record(model_dir: str | Path, backend: str, record: dict) -> None:
    """Adds or replaces one backend's verdict, keeping the others."""
    records = read_gate_records(model_dir)
    if "passed" in records:  # an old single-record file: start a keyed one
        records = {}
    records[backend] = record
    write_json(Path(model_dir) / GATE_RECORD, records)


def gate_passed(model_dir: str | Path, backend: str, graph_file: str) -> bool:
    """True when gate.json records a passed gate for `backend` on the graph bytes on disk now.

    Accepts the record keyed by backend ({"onnx-int8": {"passed": true, ...}}) that the gate
    writes, or a single record ({"passed": true, "backend": "onnx-int8"}). The record's
    graph_sha256 must match the graph: a re-export that yields the same bytes (as `make setup`
    does for the shipped model) keeps its gate, any other graph has not been gated.
    """
    record = read_gate_records(model_dir)
    if "passed" not in record:
        record = record.get(backend)
    if not (isinstance(record, dict) and record.get("backend") == backend and record.get("passed") is True):
        return False
    try:
        return record.get("graph_sha256") == graph_sha256(Path(model_dir) / graph_file)
    except OSError:
        return False


# ---------------------------------------------------------------- start-up check


def check_model_dir(model_dir: str | Path) -> None:
    """Cheap start-up check of a model directory, without loading the weights.

    Run by the gunicorn master before it forks workers, so a wrong path or a truncated
    download fails in one line instead of as a crash loop of workers.
    """
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise ModelLoadError(model_dir, "no such directory")
    if not model_dir.is_dir():
        raise ModelLoadError(model_dir, "not a directory")
    config = model_dir / CONFIG_FILE
    if not config.is_file():
        raise ModelLoadError(model_dir, f"{CONFIG_FILE} is missing")
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(model_dir, f"{CONFIG_FILE} is not valid: {exc}") from None
    tokenizer = model_dir / TOKENIZER_FILE
    if not tokenizer.is_file():
        raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is missing")
    try:
        Tokenizer.from_file(str(tokenizer))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the user
        raise ModelLoadError(model_dir, f"{TOKENIZER_FILE} is unreadable: {exc}") from None
    load_params(model_dir)
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(model_dir, f"no weights file (expected one of {', '.join(WEIGHT_FILES)})")
    safetensors = model_dir / WEIGHTS_FILE
    if safetensors.is_file():
        _check_safetensors(model_dir, safetensors)


def _check_safetensors(model_dir: Path, path: Path) -> None:
    """The header must parse and every tensor must lie inside the file (catches truncation)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
        data_size = size - 8 - header_len
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise ModelLoadError(model_dir, f"{WEIGHTS_FILE} is corrupt: {exc}") from None
    if end > data_size:
        raise ModelLoadError(model_dir, f"{WEIGHTS_FILE} is truncated: {data_size} data bytes, tensors need {end}")
