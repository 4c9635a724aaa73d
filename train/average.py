"""Average the newest checkpoints of a run, and keep the average only if it helps on held-out articles.

    python -m train.average --model outputs/minilm-squad-v2 --last 2 --out outputs/minilm-squad-v2-avg2

The average is taken over the float weights of the newest LAST `checkpoint-*` directories of MODEL
(by step). OUT gets MODEL's servable files with the averaged weights. Both MODEL and OUT are scored
on the questions of the train articles MODEL's run held out (abstention off, through the served
decoder), never on dev; the figures go to OUT/average.json and stdout. OUT/metrics.json keeps the
run's training record without its scores (they were the run weights'), for `train.package` to score.
Exit 0: the average scores higher F1 there than MODEL's own weights; 1: it does not (keep MODEL); 2: error.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.files import write_json
from qa.model_dir import METRICS_FILE, WEIGHTS_FILE
from train.cli import EXIT_OK, EXIT_REFUSED, positive_int, run_stage

AVERAGE_REPORT = "average.json"
CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def newest_checkpoints(model_dir: Path, last: int) -> list[Path]:
    """The newest `last` checkpoint directories of a run, oldest first."""
    found = sorted((int(m.group(1)), p) for p in model_dir.iterdir()
                   if (m := CHECKPOINT.match(p.name)) and (p / WEIGHTS_FILE).is_file())
    if not (model_dir / METRICS_FILE).is_file():
        raise ValueError(f"{model_dir}: no {METRICS_FILE}; average a finished run's directory")
    if len(found) < last:
        raise ValueError(f"{model_dir}: --last {last} needs {last} checkpoints with {WEIGHTS_FILE}, "
                         f"found {len(found)} ({', '.join(p.name for _, p in found) or 'none'})")
    return [p for _, p in found[-last:]]


def average_weights(sources: Sequence[Path], dest: Path) -> None:
    """dest = the element-wise mean of the sources' float tensors (others from the newest source)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    loaded = [load_file(str(source / WEIGHTS_FILE)) for source in sources]
    names = set(loaded[-1])
    for source, tensors in zip(sources, loaded):
        if set(tensors) != names:
            raise ValueError(f"{source / WEIGHTS_FILE}: its tensor names differ from {sources[-1] / WEIGHTS_FILE}")
    averaged = {}
    for name, newest in loaded[-1].items():
        if np.issubdtype(newest.dtype, np.floating):
            mean = np.mean([tensors[name].astype(np.float64) for tensors in loaded], axis=0)
            averaged[name] = mean.astype(newest.dtype)
        else:
            averaged[name] = newest
    save_file(averaged, str(dest), metadata={"format": "pt"})


def heldout_scores(model_dir: Path, backend: str) -> dict:
    from qa.engine import QAEngine
    from train.calibrate import score_pairs
    from train.robustness import heldout_examples, v11_scores

    engine = QAEngine.from_model_dir(model_dir, backend=backend)
    examples = heldout_examples(model_dir)
    scored = score_pairs(engine, [e.question for e in examples], [e.context for e in examples], model_dir.name)
    return v11_scores(examples, scored.spans)


def average(model_dir: str | Path, last: int, out: str | Path, backend: str = "torch") -> dict:
    model_dir, out = Path(model_dir), Path(out)
    sources = newest_checkpoints(model_dir, last)
    if out.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out} is the run directory itself; write the average elsewhere")
    shutil.rmtree(out, ignore_errors=True)
    from train.package import LEFTOVERS  # what a servable directory leaves out of a run's

    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns(*LEFTOVERS))
    average_weights(sources, out / WEIGHTS_FILE)
    report = {"averaged": [str(p) for p in sources], "backend": backend,
              "model": heldout_scores(model_dir, backend), "average": heldout_scores(out, backend)}
    report["f1_change"] = round(report["average"]["f1"] - report["model"]["f1"], 2)
    write_json(out / AVERAGE_REPORT, report)
    # OUT's metrics.json keeps how it was trained, not the run weights' scores: they are not OUT's.
    trained = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8")).get("training", {})
    metrics = {"training": trained}
    metrics["averaged_checkpoints"] = {"checkpoints": report["averaged"], "heldout_questions":
                                       report["model"]["questions"], "run_f1": report["model"]["f1"],
                                       "average_f1": report["average"]["f1"], "backend": backend}
    write_json(out / METRICS_FILE, metrics)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the run directory (training.output_dir)")
    parser.add_argument("--last", type=positive_int, default=2, help="how many of the newest checkpoints")
    parser.add_argument("--out", required=True, help="where the averaged model goes")
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args(argv)

    def stage() -> int:
        report = average(args.model, args.last, args.out, args.backend)
        print(json.dumps(report, indent=2))
        helps = report["f1_change"] > 0
        print(f"held-out F1 {report['model']['f1']} -> {report['average']['f1']} with the average of "
              f"{len(report['averaged'])} checkpoints: {'keep the average' if helps else 'keep the run weights'}")
        return EXIT_OK if helps else EXIT_REFUSED

    return run_stage(stage, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
