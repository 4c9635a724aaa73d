"""Average the newest checkpoints of a run, and keep the average only if it helps on held-out articles.

    python -m train.average --model outputs/minilm-squad-v2 --last 2 --out outputs/minilm-squad-v2-avg2

The average is taken over the float weights of the newest LAST `checkpoint-*` directories of MODEL
(by step). OUT gets MODEL's servable files with the averaged weights. Both MODEL and OUT are scored
on the questions of the train articles MODEL's run held out (abstention off, through the served
decoder), never on dev; the figures go to OUT/average.json and stdout. OUT/metrics.json keeps the
run's training record without its scores (they were the run weights'), for `train.package` to score.
Exit 0: the average scores higher F1 there than MODEL's own weights; 1: it does not (keep MODEL); 2: error.

    python -m train.average --model outputs/minilm-squad-v2-entity-swap --with-model DIR --share 0.5 --out OUT

With --with-model, the average is a weight-space ensemble instead: (1 - SHARE) of each of MODEL's final
float weights plus SHARE of DIR's (e.g. the champion the run started from; same architecture), judged
the same way; OUT/metrics.json records it as `weight_ensemble`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.files import repository_path, write_json
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


def average_weights(sources: Sequence[Path], dest: Path, shares: Sequence[float] | None = None) -> None:
    """dest = the element-wise mean of the sources' float tensors, weighted by `shares` (default equal),
    in the widest of their float types (fp16 with fp32 gives fp32); others from the newest source."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    loaded = [load_file(str(source / WEIGHTS_FILE)) for source in sources]
    names = set(loaded[-1])
    for source, tensors in zip(sources, loaded):
        if set(tensors) != names:
            raise ValueError(f"{source / WEIGHTS_FILE}: its tensor names differ from {sources[-1] / WEIGHTS_FILE}")
        if any(tensors[name].shape != loaded[-1][name].shape for name in names):
            raise ValueError(f"{source / WEIGHTS_FILE}: its tensor shapes differ from {sources[-1] / WEIGHTS_FILE}")
    averaged = {}
    for name, newest in loaded[-1].items():
        if np.issubdtype(newest.dtype, np.floating):
            mean = np.average([tensors[name].astype(np.float64) for tensors in loaded], axis=0, weights=shares)
            averaged[name] = mean.astype(np.result_type(*(tensors[name].dtype for tensors in loaded)))
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


def average(model_dir: str | Path, last: int, out: str | Path, backend: str = "torch",
            with_model: str | Path | None = None, share: float = 0.5) -> dict:
    model_dir, out = Path(model_dir), Path(out)
    if with_model is None:
        sources, shares = newest_checkpoints(model_dir, last), None
    else:
        if not 0.0 < share < 1.0:
            raise ValueError(f"--share must lie strictly between 0 and 1, got {share}")
        if not (Path(with_model) / WEIGHTS_FILE).is_file():
            raise ValueError(f"--with-model {with_model}: no {WEIGHTS_FILE} there")
        sources, shares = [model_dir, Path(with_model)], [1.0 - share, share]
    if out.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out} is the run directory itself; write the average elsewhere")
    shutil.rmtree(out, ignore_errors=True)
    from train.package import LEFTOVERS  # what a servable directory leaves out of a run's

    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns(*LEFTOVERS))
    average_weights(sources, out / WEIGHTS_FILE, shares)
    report = {"averaged": [str(p) for p in sources], "shares": shares, "backend": backend,
              "model": heldout_scores(model_dir, backend), "average": heldout_scores(out, backend)}
    report["f1_change"] = round(report["average"]["f1"] - report["model"]["f1"], 2)
    write_json(out / AVERAGE_REPORT, report)
    # OUT's metrics.json keeps how it was trained, not the run weights' scores: they are not OUT's.
    trained = json.loads((model_dir / METRICS_FILE).read_text(encoding="utf-8")).get("training", {})
    metrics = {"training": trained}
    heldout = {"heldout_questions": report["model"]["questions"], "run_f1": report["model"]["f1"],
               "average_f1": report["average"]["f1"], "backend": backend}
    if with_model is None:
        metrics["averaged_checkpoints"] = {"checkpoints": report["averaged"], **heldout}
    else:  # the key train.adapt writes for its mix with the champion, read by the card
        metrics["weight_ensemble"] = {"champion": repository_path(with_model), "champion_share": share, **heldout}
    write_json(out / METRICS_FILE, metrics)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the run directory (training.output_dir)")
    parser.add_argument("--last", type=positive_int, default=2, help="how many of the newest checkpoints")
    parser.add_argument("--out", required=True, help="where the averaged model goes")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--with-model", help="average the run's final weights with this model's instead")
    parser.add_argument("--share", type=float, default=0.5, help="with --with-model: its share of each weight")
    args = parser.parse_args(argv)

    def stage() -> int:
        report = average(args.model, args.last, args.out, args.backend, args.with_model, args.share)
        print(json.dumps(report, indent=2))
        helps = report["f1_change"] > 0
        what = (f"{args.share:g} of {args.with_model}'s weights" if args.with_model
                else f"the average of {len(report['averaged'])} checkpoints")
        print(f"held-out F1 {report['model']['f1']} -> {report['average']['f1']} with {what}: "
              f"{'keep the average' if helps else 'keep the run weights'}")
        return EXIT_OK if helps else EXIT_REFUSED

    return run_stage(stage, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
