"""Copy a model directory into the image with only the files ONNX serving reads.

    python docker/prune_model.py SRC DEST [--onnx auto|int8|fp32|both] [--keep-torch-weights]

Keeps the tokenizer, config, inference parameters, model card, metrics, gate record and the
chosen ONNX graph(s); leaves out the torch weights (the runtime image has no torch) and
training leftovers (checkpoints, optimizer state, logs). `--onnx auto` (default) ships the one
graph that the server's "auto" backend picks for SRC: int8 once its gate passed, else fp32.
Every copied file is made world-readable: the server runs as a non-root user and
`save_pretrained` writes some files with mode 0600.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# The serving package is beside this script's parent folder (repo root, or /src in the image).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qa.backends import ONNX_FP32, ONNX_INT8, resolve_onnxruntime_backend  # noqa: E402 - after the path
from qa.model_dir import (  # noqa: E402
    CONFIG_FILE,
    LEGACY_WEIGHTS_FILE,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    OPENVINO_DIR,
    TOKENIZER_FILE,
    TRACKING_RUN_FILE,
    WEIGHTS_FILE,
)

TORCH_WEIGHTS = (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE)
# Directories and files written by training that serving never reads.
TRAINING_LEFTOVERS = ("checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
                      "training_args.bin", "trainer_state.json", ".export-*", TRACKING_RUN_FILE,
                      # The image has ONNX Runtime only: openvino would add ~100 MB (docs/serving.md).
                      OPENVINO_DIR)
REQUIRED = (CONFIG_FILE, TOKENIZER_FILE)
ONNX_GRAPHS = {
    "int8": (ONNX_INT8_FILE,),
    "fp32": (ONNX_FP32_FILE,),
    "both": (ONNX_INT8_FILE, ONNX_FP32_FILE),
}


def auto_graph(src: Path) -> str:
    """The graph the server's "auto" backend would serve from SRC with ONNX Runtime (int8 only once gated)."""
    chosen = resolve_onnxruntime_backend(src)
    if chosen not in (ONNX_INT8, ONNX_FP32):
        raise SystemExit(
            f"error: {src} has no ONNX graph (auto picks {chosen!r}); run python -m train.export"
        )
    return "int8" if chosen == ONNX_INT8 else "fp32"


def prune(src: Path, dest: Path, onnx: str = "auto", keep_torch_weights: bool = False) -> list[Path]:
    if onnx == "auto":
        onnx = auto_graph(src)
    wanted = ONNX_GRAPHS[onnx]
    missing = [name for name in (*REQUIRED, *wanted) if not (src / name).is_file()]
    if missing:
        raise SystemExit(f"error: {src} lacks {', '.join(missing)}; export it with python -m train.export")
    if dest.exists():
        shutil.rmtree(dest)
    unwanted_graphs = {Path(g).name for graphs in ONNX_GRAPHS.values() for g in graphs} - {Path(g).name for g in wanted}
    skipped = [*TRAINING_LEFTOVERS, *unwanted_graphs, *([] if keep_torch_weights else TORCH_WEIGHTS)]
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*skipped))
    copied = sorted(p for p in dest.rglob("*"))
    for path in [dest, *copied]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return [p for p in copied if p.is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument(
        "--onnx", choices=["auto", *sorted(ONNX_GRAPHS)], default="auto", help="graph(s) to ship"
    )
    parser.add_argument("--keep-torch-weights", action="store_true")
    args = parser.parse_args(argv)
    files = prune(args.src, args.dest, args.onnx, args.keep_torch_weights)
    total = sum(p.stat().st_size for p in files)
    for path in files:
        print(f"{path.stat().st_size / 1e6:9.2f} MB  {path.relative_to(args.dest)}")
    print(f"{total / 1e6:9.2f} MB  total in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
