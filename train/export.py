"""Export a fine-tuned QA model to ONNX: fp32 (graph-optimised) and dynamic int8.

    python -m train.export --model DIR

writes DIR/onnx/model.onnx (optimised fp32), DIR/onnx/model.int8.onnx (int8 weights,
per-channel, dynamic activation quantisation) and DIR/onnx/export.json, which records the
input names the graph takes (DistilBERT-style models take no token_type_ids), the fused
operators and how far each graph's logits are from the torch model on a sample batch.
Both graphs have dynamic batch and sequence axes. The serving backends in qa/backends.py
read these files with onnxruntime alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.backends import GRAPH_FILES, ONNX_FILES, OUTPUT_NAMES, model_inputs, ort_session
from qa.files import write_json
from qa.model_dir import (
    CONFIG_FILE,
    GATE_RECORD,
    ONNX_DIR,
    ONNX_EXPORT_INFO_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    graph_sha256,
    read_gate_records,
)
from train.cli import run_stage

FP32_FILE = Path(ONNX_FP32_FILE).name
INT8_FILE = Path(ONNX_INT8_FILE).name
DEFAULT_OPSET = 17
QUANTIZED_OPS = ("MatMul", "Attention")
# The fp32 graph must reproduce torch; anything larger means a broken export, not rounding.
FP32_TOLERANCE = 1e-3


class ExportError(RuntimeError):
    pass


@dataclass
class ExportInfo:
    input_names: list[str]
    output_names: list[str]
    opset: int
    model_type: str
    num_heads: int
    hidden_size: int
    fp32_file: str = FP32_FILE
    int8_file: str = INT8_FILE
    per_channel: bool = True
    reduce_range: bool = False
    quantized_op_types: list[str] = field(default_factory=list)
    fp32_nodes: list[str] = field(default_factory=list)  # left unquantised on purpose
    fused_operators: dict[str, int] = field(default_factory=dict)
    # Max |logit difference| against torch on the verification batch.
    fp32_max_abs_diff: float | None = None
    int8_max_abs_diff: float | None = None
    onnxruntime_version: str = ""
    torch_version: str = ""
    seconds: float = 0.0


def _model_dimensions(config) -> tuple[int, int]:
    """(num_heads, hidden_size) across BERT-style and DistilBERT-style configs."""
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    if not heads or not hidden:
        raise ExportError(f"cannot read the attention head count and hidden size from {type(config).__name__}")
    return int(heads), int(hidden)


def _sample_inputs(
    input_names: list[str], vocab_size: int, batch: int = 3, length: int = 48, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random ids, question/context segments, and row 1 half padded so masking is exercised."""
    rng = np.random.default_rng(seed)
    inputs = {
        "input_ids": rng.integers(
            min(1000, vocab_size // 2), min(vocab_size, 20000), size=(batch, length), dtype=np.int64
        ),
        "attention_mask": np.ones((batch, length), dtype=np.int64),
        "token_type_ids": np.zeros((batch, length), dtype=np.int64),
    }
    inputs["attention_mask"][1, length // 2 :] = 0
    inputs["token_type_ids"][:, length // 4 :] = 1
    inputs["token_type_ids"][1, length // 2 :] = 0
    return {name: inputs[name] for name in input_names}


def _first_ffn_output_matmul(model, hidden_size: int) -> list[str]:
    """Name of the first MatMul projecting the FFN width back to the hidden size (BERT's
    layer.0 output.dense, DistilBERT's layer.0 ffn.lin2), found by its weight's shape."""
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:  # topological order: layer 0 first
        if node.op_type == "MatMul" and len(node.input) == 2:
            dims = weights.get(node.input[1])
            if dims and len(dims) == 2 and dims[1] == hidden_size and dims[0] > hidden_size:
                return [node.name]
    return []


def _load_torch_model(model_dir: Path):
    import torch
    from transformers import AutoModelForQuestionAnswering

    try:
        # Eager attention traces into the MatMul/Softmax pattern that ONNX Runtime fuses into Attention.
        model = AutoModelForQuestionAnswering.from_pretrained(
            str(model_dir), dtype=torch.float32, local_files_only=True, attn_implementation="eager"
        )
    except Exception as exc:  # noqa: BLE001 - one clear line for any load failure
        raise ExportError(f"cannot load a question-answering model from {model_dir}: {exc}") from exc
    return model.eval()


def _logits_module(model, input_names: list[str]):
    """The HF model with named positional inputs and two outputs, as the tracer wants it."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(**dict(zip(input_names, args, strict=True)), return_dict=True)
            return out.start_logits, out.end_logits

    return LogitsOnly().eval()


def _torch_reference(model, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, return_dict=True)
    return out.start_logits.numpy(), out.end_logits.numpy()


def _run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    # The serving backend's session settings: the graphs are verified as they will be served.
    session = ort_session(path, threads=1)
    start, end = session.run(list(OUTPUT_NAMES), inputs)
    return start, end


def _masked_max_abs_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    # Logits at padded positions are never decoded, so they do not count.
    return float(np.abs(np.where(mask.astype(bool), a - b, 0.0)).max())


def trace_to_onnx(model, input_names: list[str], path: Path, opset: int = DEFAULT_OPSET) -> None:
    """The unoptimised ONNX graph of a QA model, with dynamic batch and sequence axes."""
    import torch

    # Traced at another batch and sequence size than the checks after it, so a shape baked into
    # the trace shows up as a mismatch.
    trace_inputs = _sample_inputs(input_names, model.config.vocab_size, batch=2, length=20, seed=1)
    with warnings.catch_warnings():
        # The tracer warns that shape checks become constants; the checks run the graph at another
        # batch and sequence size and would catch a trace that did not generalise.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _logits_module(model, input_names),
            tuple(torch.from_numpy(trace_inputs[n]) for n in input_names),
            str(path),
            dynamo=False,  # the TorchScript exporter yields the graph ORT's BERT fusions expect
            input_names=input_names,
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*input_names, *OUTPUT_NAMES)},
            opset_version=opset,
        )


def forget_stale_gates(model_dir: Path, backends: tuple[str, ...] = tuple(ONNX_FILES)) -> None:
    """New graphs have not been gated: drop each backend's record unless it names the bytes now on
    disk (graph_sha256), so a deterministic re-export keeps its verdict and any other graph loses it."""
    model_dir = Path(model_dir)
    records = read_gate_records(model_dir)
    if not records:
        return
    stale = []
    for backend in backends:
        record = records.get(backend)
        if record is None:
            continue
        path = model_dir / GRAPH_FILES[backend]
        current = graph_sha256(path) if path.is_file() else None
        if not isinstance(record, dict) or current is None or record.get("graph_sha256") != current:
            stale.append(backend)
    if stale:
        for backend in stale:
            records.pop(backend)
        write_json(model_dir / GATE_RECORD, records)


def export_model(
    model_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    per_channel: bool = True,
    reduce_range: bool = False,
    quantize_embeddings: bool = False,
    quantize_all_layers: bool = False,
    log=print,
) -> ExportInfo:
    """Writes the fp32 and int8 graphs and export.json under model_dir/onnx; returns the record."""
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    began = time.perf_counter()
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ExportError(f"{model_dir} is not a model directory (no {CONFIG_FILE})")
    model = _load_torch_model(model_dir)
    input_names = list(model_inputs(model))
    num_heads, hidden_size = _model_dimensions(model.config)

    sample = _sample_inputs(input_names, model.config.vocab_size)
    # Reference first: the tracer may leave the module in a state that changes later outputs.
    reference = _torch_reference(model, sample)

    out_dir = model_dir / ONNX_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = out_dir / FP32_FILE, out_dir / INT8_FILE

    # Everything is written to a scratch folder and moved in only after it verifies, so a failed
    # export never leaves a half-written graph that the server's "auto" backend would pick up.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch_name:
        scratch = Path(scratch_name)
        raw_path, new_fp32, new_int8 = scratch / "model.raw.onnx", scratch / FP32_FILE, scratch / INT8_FILE
        log(f"exporting {model_dir} ({model.config.model_type}, inputs {input_names}) to ONNX opset {opset}")
        trace_to_onnx(model, input_names, raw_path, opset)
        log(f"optimising the graph (bert fusions, {num_heads} heads, hidden {hidden_size})")
        fusion = FusionOptions("bert")
        # ORT's SkipLayerNormalization CPU kernel is ~6x slower than Add + LayerNormalization
        # (290 vs 47 us at 160x384, ORT 1.32): a quarter of the int8 model's time. The serving
        # backend also disables ORT's own SkipLayerNormFusion (qa/backends.py).
        fusion.enable_skip_layer_norm = False
        optimized = optimize_model(
            str(raw_path),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=fusion,
            opt_level=0,
        )
        fused = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(new_fp32))

        # The embedding tables stay fp32 by default: quantising them (one scale per table) cost
        # 2% of answers against fp32 on SQuAD dev for no speed gain (a lookup, not a product).
        quantized_ops = QUANTIZED_OPS + (("EmbedLayerNormalization",) if quantize_embeddings else ())
        # The first layer's FFN output projection sees the largest activation outliers; one
        # per-tensor activation scale loses too much there. Keeping it fp32 raised int8/fp32
        # identical answers from 83% to 89.5% (first 200 dev questions, MiniLM smoke model) for
        # about +0.6 ms per median request.
        fp32_nodes = [] if quantize_all_layers else _first_ffn_output_matmul(onnx.load(str(new_fp32)), hidden_size)
        log(
            f"quantising {', '.join(quantized_ops)} to int8 (dynamic, per_channel={per_channel}, "
            f"reduce_range={reduce_range}); kept fp32: {fp32_nodes or 'nothing'}"
        )
        quantize_dynamic(
            str(new_fp32),
            str(new_int8),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(quantized_ops),
            nodes_to_exclude=fp32_nodes,
            # Shape inference cannot see through the fused com.microsoft ops; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )

        mask = sample["attention_mask"]
        fp32_out = _run_onnx(new_fp32, sample)
        int8_out = _run_onnx(new_int8, sample)
        fp32_diff = max(_masked_max_abs_diff(r, g, mask) for r, g in zip(reference, fp32_out, strict=True))
        if fp32_diff > FP32_TOLERANCE:
            raise ExportError(
                f"the fp32 ONNX graph disagrees with torch by {fp32_diff:.3g} (> {FP32_TOLERANCE}); nothing was written"
            )
        os.replace(new_fp32, fp32_path)
        os.replace(new_int8, int8_path)
    info = ExportInfo(
        input_names=input_names,
        output_names=list(OUTPUT_NAMES),
        opset=opset,
        model_type=model.config.model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        per_channel=per_channel,
        reduce_range=reduce_range,
        quantized_op_types=list(quantized_ops),
        fp32_nodes=fp32_nodes,
        fused_operators=fused,
        fp32_max_abs_diff=fp32_diff,
        int8_max_abs_diff=max(_masked_max_abs_diff(r, g, mask) for r, g in zip(reference, int8_out, strict=True)),
        onnxruntime_version=onnxruntime.__version__,
        torch_version=torch.__version__,
        seconds=round(time.perf_counter() - began, 2),
    )
    write_json(model_dir / ONNX_EXPORT_INFO_FILE, asdict(info))
    forget_stale_gates(model_dir)
    log(
        f"wrote {fp32_path} ({fp32_path.stat().st_size / 1e6:.1f} MB) and {int8_path} "
        f"({int8_path.stat().st_size / 1e6:.1f} MB); fused {fused}; "
        f"|fp32-torch| {info.fp32_max_abs_diff:.2g}, |int8-torch| {info.int8_max_abs_diff:.2g}"
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="fine-tuned model directory")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--per-tensor", action="store_true", help="quantise weights per tensor instead of per channel")
    parser.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights; can help accuracy on CPUs without VNNI instructions",
    )
    parser.add_argument(
        "--quantize-all-layers",
        action="store_true",
        help="also quantise the first layer's FFN output (faster, less faithful to fp32)",
    )
    parser.add_argument(
        "--quantize-embeddings",
        action="store_true",
        help="int8 embedding tables too (smaller, less accurate)",
    )
    args = parser.parse_args(argv)
    return run_stage(
        lambda: export_model(
            args.model,
            opset=args.opset,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            quantize_embeddings=args.quantize_embeddings,
            quantize_all_layers=args.quantize_all_layers,
        ),
        (ExportError,),
    )


if __name__ == "__main__":
    sys.exit(main())
