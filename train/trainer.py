"""Hugging Face Trainer wiring: arguments from the config and SQuAD evaluation through the engine."""

from __future__ import annotations

import os
from collections.abc import Sequence

from transformers import Trainer, TrainingArguments

from serve.backends import TorchBackend
from serve.engine import InferenceParams, QAEngine
from serve.windowing import Windower
from train.config import ExperimentConfig
from train.data import SquadExample


def device_arguments() -> dict:
    """bf16 where the GPU supports it, else fp16 on CUDA; on CPU full precision, and gloo for DDP."""
    import torch

    if not torch.cuda.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # use_cpu lets accelerate see a torchrun launch as multi-CPU DDP (gloo) instead of N lone runs.
            return {"bf16": False, "fp16": False, "use_cpu": True, "ddp_backend": "gloo"}
        return {"bf16": False, "fp16": False}
    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16}


def training_arguments(config: ExperimentConfig, **overrides) -> TrainingArguments:
    t = config.training
    kwargs = dict(
        output_dir=t.output_dir,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        # transformers 5 takes the warmup ratio as a float in [0, 1) through warmup_steps.
        warmup_steps=t.warmup_ratio if t.warmup_ratio > 0 else 0,
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler_type,
        seed=t.seed,
        data_seed=t.seed,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="epoch" if t.eval_each_epoch else "no",
        save_strategy="epoch",
        save_total_limit=t.save_total_limit,
        report_to=["tensorboard"],
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,  # our collator builds exactly the model's inputs
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        **device_arguments(),
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


class SquadTrainer(Trainer):
    """Evaluates with SQuAD EM/F1 computed by the serving engine on the live model."""

    def __init__(
        self, *args, eval_examples: Sequence[SquadExample], windower: Windower, params: InferenceParams, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.eval_examples = list(eval_examples)
        self.windower = windower
        self.params = params

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        from train.evaluate import score_examples

        engine = QAEngine(
            TorchBackend.from_model(self.model), self.windower, self.params,
            batch_size=self.args.per_device_eval_batch_size,
        )
        _, scores = score_examples(engine, self.eval_examples)
        metrics = {
            f"{metric_key_prefix}_exact_match": scores["exact_match"],
            f"{metric_key_prefix}_f1": scores["f1"],
            f"{metric_key_prefix}_questions": scores["questions"],
            f"{metric_key_prefix}_runtime": scores["elapsed_s"],
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
