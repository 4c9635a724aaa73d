"""Where a figure was measured: the one description of this machine that training, evaluation and the gate record."""

from __future__ import annotations

import platform
from pathlib import Path

from qa.backends import INT8_DOT_PRODUCT_FLAGS, cpu_flags, usable_cores

# CPU features that select the int8 kernels (and the backend `auto` picks); the same int8 graph has
# scored 0.26 F1 apart on two machines of this project (docs/training.md), so a verdict names where
# it was measured.
INT8_CPU_FLAGS = ("avx2", *INT8_DOT_PRODUCT_FLAGS)
# Native bf16 arithmetic: where bf16 autocast makes CPU training faster rather than slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def cpu_description() -> str:
    """e.g. "AMD EPYC, 2 cores; avx2 avx512_vnni avx_vnni" (Linux), else the platform's processor name."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {usable_cores()} cores"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = cpu_flags()
    int8_flags = " ".join(f for f in (*INT8_CPU_FLAGS, *BF16_CPU_FLAGS) if f in flags)
    return f"{model or platform.machine()}, {usable_cores()} cores" + (f"; {int8_flags}" if int8_flags else "")


def training_hardware() -> str:
    """The GPUs when training uses them, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU: {cpu_description()}"
