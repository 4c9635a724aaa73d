"""Micro-batching: model calls of requests that arrive together are combined into one.

`MicroBatcher(engine)` has the engine's `answer_many` / `answer` interface. Each caller
tokenises and decodes its own request in its own thread (so a bad request fails only its
caller); only the model call is shared. A background model thread (one per lane, below) takes
the first queued request and adds more until `max_batch_size` windows are collected or
`max_wait_ms` has passed, whichever comes first. It waits only while another caller is
known to be on its way (tokenising), so a lone request never pays the wait. The collected
windows are split into groups of similar length (`max_padding`) and each group is padded to
its longest window: on CPU a padded token costs as much as a real one.

Lanes: a lone model call runs on the engine's own backend, whose threads span the worker's
cores. Under load that wastes cores, because one call scales poorly over them (a 176-token
MiniLM int8 window: 44.2 ms on one thread, 30.3 ms on two, AVX2 EPYC). So with `lanes`
(one single-thread session of the same graph per core, QA_MODEL_LANES) there is a model
thread per lane: a call that starts while another call runs, or while requests wait, runs on
its thread's lane, so the cores run single-thread calls side by side; a call that starts with
the worker otherwise idle takes the engine's backend and all the cores. Each session owns its
threads, so calls never fight over threads, and a window's logits do not depend on which
session computed them (bitwise equal for ONNX Runtime and OpenVINO in the tests and on the CPUs
measured). With dynamic int8 quantisation the activation scale is computed over
the whole batch, so a request's logits can depend slightly on what it was batched with;
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

from qa.backends import SIDE_BY_SIDE_BACKENDS, Backend, load_backend
from qa.decoding import Answer
from qa.engine import QAEngine
from qa.errors import SettingsError
from qa.params import AnswerOptions
from qa.windowing import Window

# Measured on the 2-core target with MiniLM int8 (bench/README.md): combining requests did not
# pay (concurrency 8: 80 rps at up to 4 windows per call vs 86 at 1, more CPU per answer)
# because padded tokens cost as much as real ones and the int8 GEMMs gain little from more
# rows, and it made int8 answers depend on other traffic. So by default each model call reads one
# window; raise QA_BATCH_MAX_SIZE on machines with more cores per worker.
DEFAULT_MAX_BATCH_SIZE = 1
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_PADDING = 0.25
# Waiting longer than this for company never pays; an unbounded wait would stall the model thread.
MAX_WAIT_LIMIT_MS = 60_000.0
# QA_MODEL_LANES=auto: a single-thread lane per core the worker's backend uses, at most this many
# (each lane is one more session of the graph in memory: about 100 MB of RSS for MiniLM int8).
AUTO_MAX_LANES = 4
MAX_LANES = 64


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
        lanes: Sequence[Backend] = (),
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
        # Model thread 0 waits on _cond, the other lanes' threads on _spare (one lock). The spare
        # threads take work only while thread 0 runs a call, so a lone call always runs on thread 0,
        # as without lanes.
        lock = threading.RLock()  # Condition's own default
        self._cond = threading.Condition(lock)
        self._spare = threading.Condition(lock)
        self._first_busy = False
        self._closed = False
        # Side-by-side backends, one per model thread; without them one thread runs every call.
        self.lanes: tuple[Backend, ...] = tuple(lanes)
        self._threads: list[threading.Thread | None] = [None] * max(1, len(self.lanes))
        self._thread_pid: int | None = None
        self._busy = 0  # model calls running now
        # Observability: sizes (in windows) of the model calls made, most recent last, and how
        # many calls ran on the engine's own backend and on each lane.
        self.batch_sizes: deque[int] = deque(maxlen=1024)
        self.engine_calls = 0
        self.lane_calls = [0] * len(self.lanes)

    @classmethod
    def from_env(cls, engine: QAEngine) -> MicroBatcher:
        """Settings from QA_BATCH_MAX_SIZE, QA_BATCH_MAX_WAIT_MS, QA_BATCH_MAX_PADDING and QA_MODEL_LANES."""
        raw = {
            "QA_BATCH_MAX_SIZE": os.environ.get("QA_BATCH_MAX_SIZE") or str(DEFAULT_MAX_BATCH_SIZE),
            "QA_BATCH_MAX_WAIT_MS": os.environ.get("QA_BATCH_MAX_WAIT_MS") or str(DEFAULT_MAX_WAIT_MS),
            "QA_BATCH_MAX_PADDING": os.environ.get("QA_BATCH_MAX_PADDING") or str(DEFAULT_MAX_PADDING),
        }
        try:
            options = {
                "max_batch_size": int(raw["QA_BATCH_MAX_SIZE"]),
                "max_wait_ms": float(raw["QA_BATCH_MAX_WAIT_MS"]),
                "max_padding": float(raw["QA_BATCH_MAX_PADDING"]),
            }
            cls(engine, **options).close()  # checks the values before any lane is loaded
        except ValueError as exc:
            settings = " ".join(f"{k}={v!r}" for k, v in raw.items())
            raise SettingsError(f"bad micro-batching setting ({settings}): {exc}") from exc
        count = lane_count(engine.backend, os.environ.get("QA_MODEL_LANES") or "auto")
        return cls(engine, **options, lanes=load_lanes(engine, count))

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
            windows = self.engine.windows(questions, contexts, params)
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
                self._wake_one()
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
            self._wake_all()
            threads = list(self._threads)
        for thread in threads:
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
            self._wake_all()

    def _wake_one(self) -> None:
        """For a queued request (the lock is held): a spare model thread while thread 0 runs a call;
        thread 0 in any case (it takes the request when free, or adds it to the call it collects)."""
        if self._first_busy:
            self._spare.notify()
        self._cond.notify()

    def _wake_all(self) -> None:
        self._cond.notify_all()
        self._spare.notify_all()

    def _ensure_worker(self) -> None:
        # Threads do not survive fork: a gunicorn worker forked after the first request starts its own.
        forked = self._thread_pid != os.getpid()
        self._thread_pid = os.getpid()
        for lane, thread in enumerate(self._threads):
            if forked or thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._run, args=(lane,), name=f"qa-model-{lane}", daemon=True)
                self._threads[lane] = thread
                thread.start()

    def _next_batch(self, lane: int) -> tuple[list[_Request], Backend | None] | None:
        """Blocks for the first request, then collects more until full, timed out or nobody is coming.

        Also picks the backend: the engine's own (None) when no other call runs and nobody waits,
        else this thread's lane."""
        first = lane == 0
        waiter = self._cond if first else self._spare
        with self._cond:
            while not (self._queue and (first or self._first_busy)):
                if self._closed and (not first or not self._queue):
                    return None
                waiter.wait()
            if first:
                self._first_busy = True
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
                waiter.wait(remaining)
            alone = self._busy == 0 and not self._queue and self._arriving == 0
            self._busy += 1
            if first and self._queue:
                self._spare.notify()  # what thread 0 left in the queue goes to a spare thread
            if not self.lanes or alone:
                self.engine_calls += 1
                return batch, None
            self.lane_calls[lane] += 1
            return batch, self.lanes[lane]

    def _run(self, lane: int) -> None:
        while True:
            taken = self._next_batch(lane)
            if taken is None:
                return
            batch, backend = taken
            try:
                self._run_batch(batch, backend)
            finally:  # never leave a caller waiting forever
                with self._cond:
                    self._busy -= 1
                    if lane == 0:
                        self._first_busy = False
                for request in batch:
                    if not request.done.is_set():
                        request.error = RuntimeError("the micro-batcher failed to answer this request")
                        request.done.set()

    def _logits(self, windows: list[Window], backend: Backend | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One model call per group of windows of similar length (see padding_groups)."""
        starts: list[np.ndarray] = [np.empty(0)] * len(windows)
        ends: list[np.ndarray] = [np.empty(0)] * len(windows)
        for group in padding_groups([len(w) for w in windows], self.max_padding):
            group_starts, group_ends = self.engine.window_logits([windows[i] for i in group], backend=backend)
            for i, start, end in zip(group, group_starts, group_ends, strict=True):
                starts[i], ends[i] = start, end
            self.batch_sizes.append(len(group))
        return starts, ends

    def _run_batch(self, batch: list[_Request], backend: Backend | None) -> None:
        windows = [w for request in batch for w in request.windows]
        try:
            starts, ends = self._logits(windows, backend)
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers, never lost
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            for request in batch:  # find whose input broke the shared call
                self._run_batch([request], backend)
            return
        first = 0
        for request in batch:
            n = len(request.windows)
            request.starts, request.ends = starts[first : first + n], ends[first : first + n]
            first += n
            request.done.set()


def lane_count(backend: Backend, setting: str) -> int:
    """Lanes for QA_MODEL_LANES: 'auto' gives one per thread of the engine's backend (at most
    AUTO_MAX_LANES) where that backend runs calls side by side, else none; a number is taken as it is."""
    threads = int(getattr(backend, "threads", 1) or 1)
    side_by_side = backend.name in SIDE_BY_SIDE_BACKENDS
    if setting == "auto":
        return min(threads, AUTO_MAX_LANES) if side_by_side and threads > 1 else 0
    if not setting.isdigit() or not 0 <= int(setting) <= MAX_LANES:
        raise SettingsError(f"QA_MODEL_LANES must be 'auto' or a whole number from 0 to {MAX_LANES}, not {setting!r}")
    count = int(setting)
    if count > 1 and not side_by_side:
        raise SettingsError(
            f"QA_MODEL_LANES={setting} needs a backend that runs calls side by side "
            f"({', '.join(SIDE_BY_SIDE_BACKENDS)}), not {backend.name!r}; set QA_MODEL_LANES=0 or another QA_BACKEND"
        )
    return count if count > 1 else 0  # one lane would only copy the engine's backend


def load_lanes(engine: QAEngine, count: int) -> list[Backend]:
    """`count` more sessions of the engine's graph, each with one thread (none when count < 2)."""
    if count < 2:
        return []
    if engine.model_dir is None:
        raise SettingsError("QA_MODEL_LANES needs an engine loaded from a model directory")
    return [load_backend(engine.backend.name, engine.model_dir, threads=1) for _ in range(count)]
