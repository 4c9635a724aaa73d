"""Model runtimes behind one call: padded token arrays in, start/end logits out.

Each backend imports its runtime lazily, so a server that only uses ONNX Runtime never
imports torch or transformers.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.errors import ModelLoadError, SettingsError
from qa.model_dir import ONNX_FP32_FILE, ONNX_INT8_FILE, OPENVINO_INT8_FILE, gate_passed

TORCH = "torch"
ONNX_INT8 = "onnx-int8"
ONNX_FP32 = "onnx-fp32"
OPENVINO_INT8 = "openvino-int8"
BACKENDS = (OPENVINO_INT8, ONNX_INT8, ONNX_FP32, TORCH)
ONNX_FILES = {ONNX_INT8: ONNX_INT8_FILE, ONNX_FP32: ONNX_FP32_FILE}
# Every gated graph file by backend (torch serves the safetensors weights, which are not gated).
GRAPH_FILES = {**ONNX_FILES, OPENVINO_INT8: OPENVINO_INT8_FILE}
# Quantised backends: gated against fp32's F1, and a refusal only means falling back to fp32.
INT8_BACKENDS = (OPENVINO_INT8, ONNX_INT8)
# CPU features with int8 dot-product instructions. Static int8 (OpenVINO) beats ONNX Runtime's
# dynamic int8 only with them: 6.3 vs 9.1 ms per 176-token window on an AMX Xeon (2 threads), but
# 33.6 vs 18.2 ms on an AVX2-only EPYC, where oneDNN falls back to a generic int8 GEMM (docs/serving.md).
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# Backends whose calls can run side by side in one process, each on threads of its own (an ONNX Runtime
# session or an OpenVINO compiled model owns its thread pool); torch's thread count is process-wide.
SIDE_BY_SIDE_BACKENDS = (OPENVINO_INT8, ONNX_INT8, ONNX_FP32)
OUTPUT_NAMES = ("start_logits", "end_logits")
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ORT would fuse Add + LayerNormalization into SkipLayerNormalization, whose CPU kernel is ~6x
# slower (290 vs 47 us at 160x384 on ORT 1.32): a quarter of the int8 model's time.
ORT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
# OpenVINO prepares its kernels per input shape and caches them: a window length it has not seen
# costs about 10 ms more (29.4 against 19.8 ms on one thread). The engine pads its batches to a
# multiple of this, which leaves 24 shapes up to 384 tokens, each paid for once.
OPENVINO_LENGTH_STEP = 16


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]
    length_step: int  # the engine pads a batch's length to a multiple of this

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """start_logits, end_logits as float32 arrays of shape [batch, seq]."""


def model_inputs(model) -> tuple[str, ...]:
    """The KNOWN_INPUTS a torch model's forward() takes (DistilBERT-style models take no token_type_ids)."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(n for n in KNOWN_INPUTS if n in accepted)


def checked_signature(model_dir: Path, graph_file: str, inputs: tuple[str, ...], outputs: set[str]) -> tuple[str, ...]:
    """The graph's input names, once they and its outputs are what the engine feeds and reads."""
    unknown = [n for n in inputs if n not in KNOWN_INPUTS]
    if unknown or "input_ids" not in inputs or not set(OUTPUT_NAMES) <= outputs:
        raise ModelLoadError(
            model_dir,
            f"{graph_file} takes {list(inputs)} and gives {sorted(outputs)}; expected inputs among "
            f"{list(KNOWN_INPUTS)} and outputs {list(OUTPUT_NAMES)} (re-export it)",
        )
    return inputs


class TorchBackend:
    name = TORCH
    length_step = 1

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        try:
            import torch
            from transformers import AutoModelForQuestionAnswering
        except ImportError as exc:  # the runtime image ships without torch
            raise ModelLoadError(model_dir, f"backend 'torch' needs torch and transformers: {exc}") from exc
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        try:
            model = AutoModelForQuestionAnswering.from_pretrained(
                str(model_dir), dtype=torch.float32, local_files_only=True
            )
        except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear line
            raise ModelLoadError(model_dir, f"cannot load the weights: {exc}") from exc
        self.model = model.eval()
        self.input_names = model_inputs(self.model)

    @classmethod
    def from_model(cls, model) -> TorchBackend:
        """Wrap a model already in memory (evaluation during training), on whatever device it is."""
        import torch

        backend = cls.__new__(cls)
        backend._torch = torch
        backend.model = model
        backend.input_names = model_inputs(model)
        return backend

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
        finally:
            self.model.train(was_training)
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on CPU; needs only onnxruntime and numpy, so the runtime image has no torch."""

    length_step = 1

    def __init__(self, model_dir: Path, name: str = ONNX_INT8, threads: int | None = None) -> None:
        if name not in ONNX_FILES:
            raise ModelLoadError(model_dir, f"{name!r} is not an ONNX backend")
        self.name = name
        path = Path(model_dir) / ONNX_FILES[name]
        if not path.is_file():
            raise ModelLoadError(
                model_dir, f"backend {name!r} needs {ONNX_FILES[name]}; run `make export MODEL={model_dir}`"
            )
        try:
            import onnxruntime  # noqa: F401 - a clear error before the session is built
        except ImportError as exc:
            raise ModelLoadError(model_dir, f"backend {name!r} needs onnxruntime: {exc}") from exc
        self.threads = threads or cores_per_worker()
        try:
            self.session = ort_session(path, self.threads)
        except Exception as exc:  # noqa: BLE001 - a corrupt graph is a load error
            problem = f"{ONNX_FILES[name]} is not a loadable ONNX graph: {exc}"
            raise ModelLoadError(model_dir, problem) from exc
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = {o.name for o in self.session.get_outputs()}
        self.input_names = checked_signature(model_dir, ONNX_FILES[name], inputs, outputs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.session.run(OUTPUT_NAMES, {n: inputs[n] for n in self.input_names})
        return start, end


class OpenVinoBackend:
    """OpenVINO's CPU plugin on the static-int8 IR (python -m train.export_openvino); needs only openvino."""

    name = OPENVINO_INT8
    length_step = OPENVINO_LENGTH_STEP

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        path = Path(model_dir) / OPENVINO_INT8_FILE
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise ModelLoadError(
                model_dir,
                f"backend {OPENVINO_INT8!r} needs {OPENVINO_INT8_FILE} and its .bin; "
                f"run `make export-openvino MODEL={model_dir}`",
            )
        try:
            import openvino
        except ImportError as exc:
            raise ModelLoadError(model_dir, f"backend {OPENVINO_INT8!r} needs openvino: {exc}") from exc
        self.threads = threads or cores_per_worker()
        try:
            compiled = openvino.Core().compile_model(
                str(path),
                "CPU",
                # One call at a time per compiled model (the micro-batcher), on the threads it was given.
                # f32 for the ops left unquantised: OpenVINO's default is bf16 on CPUs with avx512_bf16
                # or AMX, which would serve other numbers than a gate run on another CPU measured.
                {
                    "INFERENCE_NUM_THREADS": self.threads,
                    "NUM_STREAMS": 1,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32",
                    # OpenVINO pins each process's threads from the first core on: two workers of one
                    # thread both ran on core 0 (32.7 instead of 16 ms a window each).
                    "ENABLE_CPU_PINNING": False,
                },
            )
        except Exception as exc:  # noqa: BLE001 - a corrupt graph is a load error
            raise ModelLoadError(model_dir, f"{OPENVINO_INT8_FILE} is not a loadable OpenVINO graph: {exc}") from exc
        inputs = tuple(port.get_any_name() for port in compiled.inputs)
        outputs = {port.get_any_name() for port in compiled.outputs}
        self.input_names = checked_signature(model_dir, OPENVINO_INT8_FILE, inputs, outputs)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one call at a time

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            results = self._request.infer({n: inputs[n] for n in self.input_names})
            by_name = {port.get_any_name(): value for port, value in results.items()}
            # copies: the request reuses its output buffers on the next call
            return tuple(np.array(by_name[n], dtype=np.float32) for n in OUTPUT_NAMES)


def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session as the service runs it (export verifies its graphs with it too)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's default: pool threads busy-wait between parallel sections. With one model call at
    # a time per worker and threads = cores / workers it cut the median request from 8.6 to
    # 6.5 ms; QA_ORT_SPIN=0 turns it off where other processes share the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("QA_ORT_SPIN", "1"))
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS)
    )


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

    The quota is what `docker run --cpus`, Kubernetes limits and Cloud Run set; affinity alone
    shows every core of the host and would start a thread per core on a 1-CPU container.
    """
    from joblib.externals.loky import cpu_count  # ~0.1 s to import: only where threads are chosen

    return cpu_count()


def cores_per_worker() -> int:
    """The cores one server process owns: usable cores shared among QA_WORKERS (or WEB_CONCURRENCY)."""
    workers = int(os.environ.get("QA_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 1)
    return max(1, usable_cores() // max(1, workers))


def default_threads() -> int | None:
    """Intra-op threads: QA_THREADS when set, else the cores per worker."""
    value = os.environ.get("QA_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise SettingsError(f"QA_THREADS must be a positive integer, not {value!r}")
        return int(value)
    return cores_per_worker()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def load_backend(name: str, model_dir: Path, threads: int | None = None) -> Backend:
    if name == TORCH:
        return TorchBackend(model_dir, threads=threads)
    if name == OPENVINO_INT8:
        return OpenVinoBackend(model_dir, threads=threads)
    if name in ONNX_FILES:
        return OnnxBackend(model_dir, name, threads=threads)
    raise ModelLoadError(model_dir, f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")


def int8_gate_passed(model_dir: Path) -> bool:
    """True when DIR/gate.json records a passed int8 gate for the int8 graph on disk now."""
    return gate_passed(model_dir, ONNX_INT8, ONNX_FILES[ONNX_INT8])


def openvino_preferred(model_dir: Path, flags: frozenset[str] | None = None) -> bool:
    """True when the static-int8 graph passed its gate, openvino is installed and the CPU has int8
    dot-product instructions (without them ONNX Runtime's dynamic int8 is faster)."""
    if not set(INT8_DOT_PRODUCT_FLAGS) & (cpu_flags() if flags is None else flags):
        return False
    if not gate_passed(model_dir, OPENVINO_INT8, OPENVINO_INT8_FILE):
        return False
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend_name(name: str, model_dir: Path) -> str:
    """'auto' picks the fastest backend the model directory supports on this CPU.

    Static int8 (OpenVINO) where openvino_preferred, else ONNX Runtime (resolve_onnxruntime_backend).
    """
    if name != "auto":
        return name
    if openvino_preferred(Path(model_dir)):
        return OPENVINO_INT8
    return resolve_onnxruntime_backend(model_dir)


def resolve_onnxruntime_backend(model_dir: Path) -> str:
    """int8 only once its gate passed (its F1 may trail fp32 by at most 0.5), else the exported
    fp32 graph, else torch."""
    model_dir = Path(model_dir)
    if (model_dir / ONNX_FILES[ONNX_INT8]).is_file() and int8_gate_passed(model_dir):
        return ONNX_INT8
    if (model_dir / ONNX_FILES[ONNX_FP32]).is_file():
        return ONNX_FP32
    return TORCH
