"""Whether the shipped model's full-dev gates must run again: a hash of everything they depend on.

    python tools/gate_inputs.py hash   --data DEV [--model DIR]
    python tools/gate_inputs.py check  --data DEV [--model DIR] [--record FILE]   exit 0: unchanged
    python tools/gate_inputs.py record --data DEV [--model DIR] [--record FILE] [--inputs-sha256 HASH]

The inputs are the model directory, all of qa/ (windowing, decoding, the backends), the train/
modules the gate and the evaluation import, the dev file, the dependency pins and .ci/run itself.
Files are read from the working tree, tracked or not (ignored ones, such as the ONNX graphs built
from the committed weights, are left out). The CPU is not an input: the gates are there to catch a
change of the model, the code or the data, and the record names the machine it was made on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from train.hardware import cpu_description

try:
    from tools.source_imports import first_party_imports
except ImportError:  # run as a script: tools/ itself is on sys.path
    from source_imports import first_party_imports

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "models/minilm-l6-squad"
DEFAULT_RECORD = ".ci/full-dev-gates.json"
GATE_ENTRY_POINTS = ("train/gate.py", "train/evaluate.py")
FIXED_INPUTS = ("qa", "constraints.txt", "pyproject.toml", ".ci/run")


def _imported_train_modules(entry: Path, root: Path) -> set[Path]:
    """train/ files that `entry` imports, transitively (imports inside functions count)."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for name in first_party_imports(path, {"train"}):
            parts = name.split(".")
            module = root.joinpath(*parts)
            # Importing train.metrics.squad_v1 also runs train/__init__.py and train/metrics/__init__.py.
            pending += [module.with_suffix(".py")] + [
                root.joinpath(*parts[:depth], "__init__.py") for depth in range(1, len(parts) + 1)
            ]
    return seen


def gate_input_files(root: Path, model: str) -> list[Path]:
    """The files the full-dev gates depend on, relative to root, sorted."""
    code = set().union(*(_imported_train_modules(root / entry, root) for entry in GATE_ENTRY_POINTS))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", model, *FIXED_INPUTS],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    files = {root / name for name in listed if name and (root / name).is_file()} | code
    return sorted(path.relative_to(root) for path in files)


def inputs_sha256(root: Path, model: str, data: Path) -> str:
    digest = hashlib.sha256()
    for relative in gate_input_files(root, model):
        digest.update(f"{relative.as_posix()}\0{hashlib.sha256((root / relative).read_bytes()).hexdigest()}\n".encode())
    digest.update(f"dev data\0{hashlib.sha256(data.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["hash", "check", "record"])
    parser.add_argument("--data", type=Path, required=True, help="the dev file the gates score")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--record", type=Path, default=ROOT / DEFAULT_RECORD)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--inputs-sha256", help="record this hash (taken before the gates ran)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"gate-inputs: error: no dev file at {args.data}", file=sys.stderr)
        return 2
    # `record` after the gates takes the hash taken before them: a gate writes its verdict into the
    # model directory, which is one of the inputs.
    current = args.inputs_sha256 or inputs_sha256(args.root, args.model, args.data)
    if args.action == "hash":
        print(current)
        return 0
    if args.action == "record":
        record = {"inputs_sha256": current, "model": args.model, "data": args.data.name,
                  "recorded": time.strftime("%Y-%m-%d", time.gmtime()), "machine": cpu_description()}
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        print(f"gate-inputs: recorded {current[:12]} in {args.record}")
        return 0
    try:
        record = json.loads(args.record.read_text())
        recorded = record["inputs_sha256"]
    except FileNotFoundError:
        print(f"gate-inputs: no record at {args.record}: the gates run")
        return 1
    except (ValueError, KeyError, TypeError) as error:
        print(f"gate-inputs: {args.record}: unreadable record ({error!r}): the gates run")
        return 1
    if recorded != current:
        print(f"gate-inputs: inputs changed since the gates recorded on {record.get('recorded')} "
              f"({recorded[:12]} -> {current[:12]}): the gates run")
        return 1
    print(f"gate-inputs: model, engine code, dependency pins and dev data unchanged since the gates passed on "
          f"{record.get('recorded')} ({record.get('machine')}; inputs {current[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
