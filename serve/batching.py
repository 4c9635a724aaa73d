"""Micro-batching: model calls of requests that arrive together are combined into one.

`MicroBatcher(engine)` has the engine's `answer_many` / `answer` interface. Each caller
tokenises and decodes its own request in its own thread (so a bad request fails only its
caller); only the model call is shared. One background thread runs the model: it takes the
first queued request and adds more until `max_batch_size` windows are collected or
`max_wait_ms` has passed, whichever comes first. It waits only while another caller is
known to be on its way (tokenising), so a lone request never pays the wait. The collected
windows are split into groups of similar length (`max_padding`) and each group is padded to
its longest window: on CPU a padded token costs as much as a real one.

Model calls are serialised, so a worker never runs two ONNX Runtime calls that fight over
the same cores. With dynamic int8 quantisation the activation scale is computed over the
whole batch, so a request's logits can depend slightly on what it was batched with;
max_batch_size=1 makes answers independent of other traffic.

If a combined model call fails, each request in it is retried alone so the exception
reaches only the caller whose input caused it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.decoding import Answer
from qa.engine import QAEngine
from qa.errors import SettingsError
from qa.params import AnswerOptions
from qa.windowing import Window

# Measured on the 2-core target with MiniLM int8 (bench/README.md): combining requests did not
# pay (concurrency 8: 80 rps at up to 4 windows per call vs 86 at 1, more CPU per answer)
# because padded tokens cost as much as real ones and the int8 GEMMs gain little from more
# rows, and it made int8 answers depend on other traffic. So by default the batcher only serialises model calls; raise
# QA_BATCH_MAX_SIZE on machines with more cores per worker.
DEFAULT_MAX_BATCH_SIZE = 1
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_PADDING = 0.25
# Waiting longer than this for company never pays; an unbounded wait would stall the model thread.
MAX_WAIT_LIMIT_MS = 60_000.0


@dataclass
class _Request:
    windows: list[Window]
    done: threading.Event = field(default_factory=threading.Event)
    starts: list[np.ndarray] | None = None
    ends: list[np.ndarray] | None = None
    error: BaseException | None = None


class BatcherClosed(RuntimeError):
    pass


def padding_groups(lengths: Sequence[int], max_padding: float) -> list[list[int]]:
    """Indices grouped shortest first so that padding each group to its longest member adds at
    most `max_padding` (a fraction) to its real tokens. On CPU a padded token costs as much as
    a real one, so one long window would otherwise multiply the cost of a batch of short ones.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    current: list[int] = []
    real_tokens = 0
    for i in order:
        n = lengths[i]
        if current and n * (len(current) + 1) > (1 + max_padding) * (real_tokens + n):
            groups.append(current)
            current, real_tokens = [], 0
        current.append(i)
        real_tokens += n
    if current:
        groups.append(current)
    return groups


class MicroBatcher:
    def __init__(
        self,
        engine: QAEngine,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_padding: float = DEFAULT_MAX_PADDING,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        if not 0 <= max_wait_ms <= MAX_WAIT_LIMIT_MS:  # also refuses nan and inf
            raise ValueError(f"max_wait_ms must be between 0 and {MAX_WAIT_LIMIT_MS:g}, not {max_wait_ms}")
        if max_padding < 0:
            raise ValueError(f"max_padding must not be negative, not {max_padding}")
        self.max_padding = max_padding
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: deque[_Request] = deque()
        self._arriving = 0  # callers between entering answer_many and queueing their windows
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        # Observability: sizes (in windows) of the model calls made, most recent last.
        self.batch_sizes: deque[int] = deque(maxlen=1024)

    @classmethod
    def from_env(cls, engine: QAEngine) -> MicroBatcher:
        """Settings from QA_BATCH_MAX_SIZE, QA_BATCH_MAX_WAIT_MS and QA_BATCH_MAX_PADDING."""
        raw = {
            "QA_BATCH_MAX_SIZE": os.environ.get("QA_BATCH_MAX_SIZE") or str(DEFAULT_MAX_BATCH_SIZE),
            "QA_BATCH_MAX_WAIT_MS": os.environ.get("QA_BATCH_MAX_WAIT_MS") or str(DEFAULT_MAX_WAIT_MS),
            "QA_BATCH_MAX_PADDING": os.environ.get("QA_BATCH_MAX_PADDING") or str(DEFAULT_MAX_PADDING),
        }
        try:
            return cls(
                engine,
                max_batch_size=int(raw["QA_BATCH_MAX_SIZE"]),
                max_wait_ms=float(raw["QA_BATCH_MAX_WAIT_MS"]),
                max_padding=float(raw["QA_BATCH_MAX_PADDING"]),
            )
        except ValueError as exc:
            settings = " ".join(f"{k}={v!r}" for k, v in raw.items())
            raise SettingsError(f"bad micro-batching setting ({settings}): {exc}") from exc

    # The engine's read-only attributes (params, model_dir, backend, windower) pass through.
    def __getattr__(self, name: str):
        if name == "engine":  # not set yet: avoid recursing during construction
            raise AttributeError(name)
        return getattr(self.engine, name)

    def answer_many(
        self,
        questions: Sequence[str],
        contexts: Sequence[str],
        **options,
    ) -> list[list[Answer]]:
        """QAEngine.answer_many, with the model calls shared with concurrent requests."""
        options.pop("batch_size", None)  # the batcher forms its own batches
        call = AnswerOptions(**options)
        params = self.engine.resolve(call)
        with self._cond:
            self._check_open()
            self._arriving += 1
        try:
            windows = self.engine.windower_for(params).windows(questions, contexts)
        except BaseException:
            self._arrived()
            raise
        request = _Request(windows)
        if windows:
            with self._cond:
                self._arriving -= 1
                self._check_open()
                self._ensure_worker()
                self._queue.append(request)
                self._cond.notify_all()
            request.done.wait()
            if request.error is not None:
                raise request.error
        else:
            self._arrived()
            request.starts, request.ends = [], []
        return self.engine.decode(contexts, request.windows, request.starts, request.ends, call, params)

    def answer(self, question: str, context: str, **options) -> list[Answer]:
        """answer_many for one pair; `options` are answer_many's (top_k, max_answer_length, ...)."""
        return self.answer_many([question], [context], **options)[0]

    def close(self) -> None:
        """Finish queued requests, then stop the model thread; later calls raise BatcherClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()

    def pending(self) -> int:
        """Requests queued for the model thread."""
        with self._cond:
            return len(self._queue)

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BatcherClosed("the micro-batcher is closed")

    def _arrived(self) -> None:
        with self._cond:
            self._arriving -= 1
            self._cond.notify_all()

    def _ensure_worker(self) -> None:
        # Threads do not survive fork: a gunicorn worker forked after the first request starts its own.
        if self._thread is None or self._thread_pid != os.getpid() or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="qa-microbatcher", daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _next_batch(self) -> list[_Request] | None:
        """Blocks for the first request, then collects more until full, timed out or nobody is coming."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            size = len(batch[0].windows)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch_size:
                if self._queue:
                    if size + len(self._queue[0].windows) > self.max_batch_size:
                        break
                    request = self._queue.popleft()
                    batch.append(request)
                    size += len(request.windows)
                    continue
                remaining = deadline - time.monotonic()
                if self._arriving == 0 or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            finally:  # never leave a caller waiting forever
                for request in batch:
                    if not request.done.is_set():
                        request.error = RuntimeError("the micro-batcher failed to answer this request")
                        request.done.set()

    def _logits(self, windows: list[Window]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One model call per group of windows of similar length (see padding_groups)."""
        starts: list[np.ndarray] = [np.empty(0)] * len(windows)
        ends: list[np.ndarray] = [np.empty(0)] * len(windows)
        for group in padding_groups([len(w) for w in windows], self.max_padding):
            group_starts, group_ends = self.engine.window_logits([windows[i] for i in group])
            for i, start, end in zip(group, group_starts, group_ends, strict=True):
                starts[i], ends[i] = start, end
            self.batch_sizes.append(len(group))
        return starts, ends

    def _run_batch(self, batch: list[_Request]) -> None:
        windows = [w for request in batch for w in request.windows]
        try:
            starts, ends = self._logits(windows)
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers, never lost
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            for request in batch:  # find whose input broke the shared call
                self._run_batch([request])
            return
        first = 0
        for request in batch:
            n = len(request.windows)
            request.starts, request.ends = starts[first : first + n], ends[first : first + n]
            first += n
            request.done.set()
