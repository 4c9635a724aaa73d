"""Hugging Face Trainer wiring: arguments from the config and SQuAD evaluation through the engine."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from qa.backends import TorchBackend
from qa.engine import QAEngine
from qa.params import InferenceParams
from qa.windowing import Windower
from train.config import ExperimentConfig
from train.data import SquadExample
from train.tracking import tracking_enabled

logger = logging.getLogger(__name__)


def device_arguments(cpu_bf16: bool = False) -> dict:
    """bf16 where the GPU supports it, else fp16 on CUDA; on CPU full precision (bf16 autocast when
    asked for and the CPU has native bf16), and gloo for DDP."""
    import torch

    from train.hardware import BF16_CPU_FLAGS, cpu_has_native_bf16

    if not torch.cuda.is_available():
        bf16 = cpu_bf16 and cpu_has_native_bf16()
        if cpu_bf16 and not bf16:
            logger.warning("training.cpu_bf16 is set but this CPU has none of %s: training in fp32",
                           ", ".join(BF16_CPU_FLAGS))
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # use_cpu lets accelerate see a torchrun launch as multi-CPU DDP (gloo) instead of N lone runs.
            return {"bf16": bf16, "fp16": False, "use_cpu": True, "ddp_backend": "gloo"}
        # transformers accepts bf16 on a CPU only with use_cpu set.
        return {"bf16": True, "fp16": False, "use_cpu": True} if bf16 else {"bf16": False, "fp16": False}
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
        report_to=["tensorboard", "mlflow"] if tracking_enabled() else ["tensorboard"],
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,  # our collator builds exactly the model's inputs
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        # Length-grouped batches pad about half as much as random ones; lengths come from our "length" column.
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        **device_arguments(t.cpu_bf16),
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order that depends on (seed, epoch) alone.

    The stock sampler draws from the global torch RNG, whose state at an epoch start differs between
    an uninterrupted run and one resumed mid-run; a per-epoch generator makes a resume replay the order.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer (through accelerate) every epoch
        self.epoch = epoch

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SquadTrainer(Trainer):
    """Evaluates with SQuAD EM/F1 computed by the serving engine on the live model."""

    def __init__(
        self, *args, eval_examples: Sequence[SquadExample], windower: Windower, params: InferenceParams, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.eval_examples = list(eval_examples)
        self.windower = windower
        self.params = params

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length":
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                list(dataset[self.args.length_column_name]), seed,
            )
        return super()._get_train_sampler(train_dataset)

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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_GRACE_S = 3.0


class TimeBox(TrainerCallback):
    """Stops training after `max_minutes` with a full checkpoint, and saves one every `save_every_minutes`.

    The checkpoint is the Trainer's own (weights, optimizer, scheduler, RNG, global step), so
    `trainer.train(resume_from_checkpoint=...)` continues with the same data order. The stop step is
    also logged, so no loss goes missing from the curve. Inside `stop_on_signals()`, SIGTERM or
    Ctrl-C ends the run the same way at the end of the current step; another one, 3 s or more
    later, stops at once. Under torchrun the agent forwards signals and kills the workers 30 s
    later, so there the time box is the clean way to stop.
    """

    clock = staticmethod(time.monotonic)  # replaced by tests to make the stop step deterministic

    def __init__(self, max_minutes: float | None, save_every_minutes: float | None) -> None:
        self.max_seconds = max_minutes * 60 if max_minutes else None
        self.save_every_seconds = save_every_minutes * 60 if save_every_minutes else None
        self.stopped = False
        self.stop_reason: str | None = None  # "time box" or "signal"
        self.stop_requested = False
        self._requested_at = 0.0
        self.started = self.last_save = None

    def request_stop(self, signum: int | None = None, frame=None) -> None:
        now = time.monotonic()  # the real clock: this is about a person pressing keys
        if self.stop_requested:
            # One Ctrl-C can arrive twice (the terminal and a launcher that forwards it); only a repeat
            # after REPEAT_GRACE_S means "out now, checkpoint or not".
            if now - self._requested_at >= REPEAT_GRACE_S:
                raise KeyboardInterrupt
            return
        self.stop_requested = True
        self._requested_at = now
        name = signal.Signals(signum).name if signum else "a request"
        logger.warning("%s: stopping after this step with a full checkpoint (send it again to stop at once)", name)

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT request a clean stop while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        now = self.clock()
        out_of_time = self.max_seconds is not None and now - self.started >= self.max_seconds
        save_due = self.save_every_seconds is not None and now - self.last_save >= self.save_every_seconds
        asked, out_of_time, save_due = _any_rank((self.stop_requested, out_of_time, save_due), args.device)
        if asked or out_of_time:
            if state.global_step < state.max_steps:
                self.stopped = True
                self.stop_reason = "signal" if asked else "time box"
                control.should_training_stop = True
                control.should_save = True
                control.should_log = True
        elif save_due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = self.clock()


def _any_rank(flags: tuple[bool, ...], device) -> tuple[bool, ...]:
    """Each flag true on every rank when it is true on any (one reduction), so DDP processes stop or
    save on the same step."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return tuple(flags)
    import torch

    values = torch.tensor([1 if flag else 0 for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())
