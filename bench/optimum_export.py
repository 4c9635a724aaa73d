"""The Optimum peer's int8 graph, made as Optimum's documentation makes one (bench/baseline_wsgi.py serves it).

    .venv-baseline/bin/python bench/optimum_export.py MODEL_DIR OUT_DIR

Exports MODEL_DIR with ORTModelForQuestionAnswering and quantises it with ORTQuantizer: dynamic
int8, per channel, with the AutoQuantizationConfig for this CPU (avx512_vnni where the CPU has
it, else avx2). Runs in the baseline virtualenv, which has optimum[onnxruntime]; prints OUT_DIR.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def cpu_config_name() -> str:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2"


def export(model_dir: Path, out_dir: Path) -> Path:
    from optimum.onnxruntime import ORTModelForQuestionAnswering, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    with tempfile.TemporaryDirectory(prefix="optimum-fp32-") as fp32_dir:
        ORTModelForQuestionAnswering.from_pretrained(str(model_dir), export=True).save_pretrained(fp32_dir)
        config = getattr(AutoQuantizationConfig, cpu_config_name())(is_static=False, per_channel=True)
        ORTQuantizer.from_pretrained(fp32_dir).quantize(save_dir=str(out_dir), quantization_config=config)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1].strip())
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
