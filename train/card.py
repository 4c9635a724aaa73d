"""Model card (README.md) and training-curve PNG for a trained model directory."""

from __future__ import annotations

from pathlib import Path

from train.config import ExperimentConfig


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
    loss_axis.set_title("Training loss and eval F1 per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_model_card(out: Path, config: ExperimentConfig, metrics: dict) -> None:
    t = config.training
    training = metrics.get("training", {})
    eval_scope = (f"first {metrics.get('questions')} questions of" if config.data.max_eval_examples
                  else "all questions of")
    lines = [
        f"# {out.name}",
        "",
        "Extractive question answering (SQuAD v1.1), fine-tuned with the Hugging Face Trainer by this project.",
        "",
        "## Scores",
        "",
        f"Measured on the {eval_scope} `{metrics.get('data_file')}` with the official SQuAD v1.1 scoring, "
        f"through the serving engine ({metrics.get('backend')} backend):",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| exact match | {metrics.get('exact_match', float('nan')):.2f} |",
        f"| F1 | {metrics.get('f1', float('nan')):.2f} |",
        f"| questions | {metrics.get('questions')} |",
        f"| gate (EM / F1) | >= {config.gate.exact_match} / >= {config.gate.f1} |",
        "",
        "## Training",
        "",
        f"- Base model: `{config.model.name_or_path}`",
        f"- Train data: `{training.get('train_file')}` (sha256 of the JSON `{training.get('train_sha256')}`), "
        f"{training.get('train_examples')} questions -> {training.get('train_windows')} windows "
        f"({training.get('windows_without_answer')} with the answer outside the window)",
        f"- Eval data: `{metrics.get('data_file')}` (sha256 of the JSON `{metrics.get('data_sha256')}`)",
        f"- Hyperparameters: learning rate {t.learning_rate}, epochs {t.num_train_epochs}, max steps {t.max_steps}, "
        f"batch {t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation, warmup ratio "
        f"{t.warmup_ratio}, weight decay {t.weight_decay}, scheduler {t.lr_scheduler_type}, seed {t.seed}",
        f"- Windows: max_seq_length {config.preprocessing.max_seq_length}, doc_stride "
        f"{config.preprocessing.doc_stride}; decoding n-best {config.preprocessing.n_best}, "
        f"max answer length {config.preprocessing.max_answer_length} tokens",
        f"- Training time: {training.get('train_runtime_s')} s on {training.get('hardware')} "
        f"({training.get('train_samples_per_second')} windows/s), torch {training.get('torch')}",
        f"- Git commit: `{training.get('git_commit')}`; date {metrics.get('date')}",
        f"- Config: `{config.source}` (copied to train_config.yaml)",
        "",
        "![training curve](training_curve.png)",
        "",
        "## Licence and data",
        "",
        "SQuAD v1.1 is CC BY-SA 4.0 (Rajpurkar et al., 2016). Check the base model's licence before redistribution.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
