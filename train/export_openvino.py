"""Export a fine-tuned QA model to a static-int8 OpenVINO graph, calibrated on SQuAD train windows.

    python -m train.export_openvino --model DIR --calibration-data train-v1.1.json.gz [--samples 300]

writes DIR/openvino/model.int8.xml and .bin (OpenVINO IR) and DIR/openvino/export.json. NNCF's
post-training quantisation (transformer preset) fixes every activation scale from the
calibration windows, so at serving time nothing is measured on the fly: an answer cannot depend
on the other questions in its batch, and no time goes to finding ranges at each MatMul.
Calibration reads the train articles that training held out (heldout_articles.json) when the
file has them, never the dev set the gate scores. The serving backend (qa/backends.py,
"openvino-int8") needs only the openvino package; this export also needs nncf and torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.backends import OPENVINO_INT8, OpenVinoBackend, model_inputs
from qa.files import write_json
from qa.model_dir import (
    CONFIG_FILE,
    HELDOUT_FILE,
    OPENVINO_DIR,
    OPENVINO_EXPORT_INFO_FILE,
    OPENVINO_INT8_FILE,
    TOKENIZER_FILE,
    load_params,
)
from qa.windowing import Windower
from train.cli import run_stage
from train.data import SquadFormatError, load_squad
from train.export import (
    DEFAULT_OPSET,
    ExportError,
    _load_torch_model,
    _masked_max_abs_diff,
    _sample_inputs,
    _torch_reference,
    forget_stale_gates,
    trace_to_onnx,
)
from train.hardware import cpu_description

DEFAULT_SAMPLES = 300
XML_FILE = Path(OPENVINO_INT8_FILE).name
BIN_FILE = Path(OPENVINO_INT8_FILE).with_suffix(".bin").name


@dataclass
class OpenVinoExportInfo:
    input_names: list[str]
    calibration_file: str
    calibration_articles: str  # "held-out train articles" or "all articles of the file"
    calibration_windows: int
    seed: int
    int8_max_abs_diff: float  # max |logit difference| against torch on the verification batch
    openvino_version: str
    nncf_version: str
    # NNCF measures activations on this CPU's float kernels: another CPU calibrates other bytes.
    calibrated_on: str
    seconds: float


def calibration_windows(model_dir: Path, data_file: str | Path, samples: int, seed: int) -> tuple[list, str]:
    """`samples` windows (one per item, as served) of seeded-shuffled train questions; the held-out
    articles only when heldout_articles.json names some that the file has."""
    examples = load_squad(data_file)
    heldout_path = model_dir / HELDOUT_FILE
    titles = set()
    if heldout_path.is_file():
        titles = set(json.loads(heldout_path.read_text(encoding="utf-8")).get("titles", []))
    heldout = [e for e in examples if e.title in titles]
    chosen, articles = (heldout, "held-out train articles") if heldout else (examples, "all articles of the file")
    chosen = list(chosen)
    random.Random(seed).shuffle(chosen)
    windower = Windower.from_file(model_dir / TOKENIZER_FILE, load_params(model_dir))
    windows = windower.windows([e.question for e in chosen[:samples]], [e.context for e in chosen[:samples]])
    return [windower.pad([w]) for w in windows[:samples]], articles


def export_openvino_int8(
    model_dir: str | Path,
    calibration_file: str | Path,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    log=print,
) -> OpenVinoExportInfo:
    """Writes the static-int8 IR and export.json under model_dir/openvino; returns the record."""
    try:
        import nncf
        import openvino
    except ImportError as exc:
        raise ExportError(f"the OpenVINO export needs openvino and nncf (make setup installs them): {exc}") from exc

    began = time.perf_counter()
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ExportError(f"{model_dir} is not a model directory (no {CONFIG_FILE})")
    if samples < 1:
        raise ExportError(f"--samples must be at least 1, not {samples}")
    model = _load_torch_model(model_dir)
    input_names = list(model_inputs(model))
    batches, articles = calibration_windows(model_dir, calibration_file, samples, seed)
    if not batches:
        raise ExportError(f"{calibration_file} gave no calibration windows")
    sample = _sample_inputs(input_names, model.config.vocab_size)
    reference = _torch_reference(model, sample)

    out_dir = model_dir / OPENVINO_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch_name:
        scratch = Path(scratch_name)
        raw_path = scratch / "model.raw.onnx"
        log(f"tracing {model_dir} ({model.config.model_type}, inputs {input_names}) to ONNX")
        trace_to_onnx(model, input_names, raw_path, DEFAULT_OPSET)
        log(f"quantising to static int8 with NNCF on {len(batches)} windows of {articles} in {calibration_file}")
        nncf.set_log_level(logging.ERROR)
        quantized = nncf.quantize(
            openvino.Core().read_model(str(raw_path)),
            nncf.Dataset([b.as_inputs(input_names) for b in batches]),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(batches),
        )
        # Saved in a scratch model directory and loaded by the serving backend from there: a graph
        # that cannot serve is never moved in.
        staged = scratch / "model"
        openvino.save_model(quantized, str(staged / OPENVINO_INT8_FILE), compress_to_fp16=False)
        got = OpenVinoBackend(staged, threads=1)(sample)
        diff = max(_masked_max_abs_diff(r, g, sample["attention_mask"]) for r, g in zip(reference, got, strict=True))
        for name in (XML_FILE, BIN_FILE):
            os.replace(staged / OPENVINO_DIR / name, out_dir / name)
    info = OpenVinoExportInfo(
        input_names=input_names,
        calibration_file=str(calibration_file),
        calibration_articles=articles,
        calibration_windows=len(batches),
        seed=seed,
        int8_max_abs_diff=diff,
        openvino_version=openvino.__version__,
        nncf_version=nncf.__version__,
        calibrated_on=cpu_description(),
        seconds=round(time.perf_counter() - began, 2),
    )
    write_json(model_dir / OPENVINO_EXPORT_INFO_FILE, asdict(info))
    forget_stale_gates(model_dir, (OPENVINO_INT8,))
    size = sum((out_dir / name).stat().st_size for name in (XML_FILE, BIN_FILE)) / 1e6
    log(f"wrote {out_dir / XML_FILE} and {BIN_FILE} ({size:.1f} MB); |int8-torch| {diff:.2g}; "
        f"gate it with `make gate MODEL={model_dir} BACKEND={OPENVINO_INT8}`")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export_openvino", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="fine-tuned model directory")
    parser.add_argument("--calibration-data", required=True, type=Path, help="SQuAD train file (never dev)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration windows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    args = parser.parse_args(argv)
    return run_stage(
        lambda: export_openvino_int8(args.model, args.calibration_data, args.samples, args.seed),
        (ExportError, SquadFormatError),
    )


if __name__ == "__main__":
    sys.exit(main())
