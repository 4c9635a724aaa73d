"""MicroBatcher: concurrent requests share model calls, and each caller gets its own result."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import STUCK_S, RecordingBackend
from hypothesis import given
from hypothesis import strategies as st

from qa.engine import QAEngine
from qa.errors import SettingsError
from serve.batching import AUTO_MAX_LANES, BatcherClosed, MicroBatcher, lane_count, padding_groups

EXAMPLES = [
    ("Where was the treaty signed?", "After long talks, the treaty was finally signed in Lisbon in 1907."),
    ("Who wrote the report?", "The report, written by Maria Lopez, argued that the bridge needed repairs."),
    ("What colour is the door?", "The house at the end of the lane has a bright green door."),
    ("When were the moons found?", "Mars has two small moons, Phobos and Deimos, found in 1877. " * 40),
    ("Which river?", "The city grew on both banks of the Danube, which made it rich from river trade."),
    ("Who won?", "In the final, the visiting team won by two goals after extra time."),
]
# Generous bound for work that takes milliseconds; only reached when something is stuck.


@pytest.fixture()
def engine(tiny_bert_dir):
    engine = QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1)
    engine.backend = RecordingBackend(engine.backend)
    return engine


@pytest.fixture()
def reference(tiny_bert_dir):
    return QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1)


def spans(per_question):
    """Text and offsets, plus the score to 4 decimals (padding moves float32 logits by ~1e-7)."""
    return [[(a.text, a.start, a.end, f"{a.score:.4f}") for a in answers] for answers in per_question]


def call_in_threads(functions):
    """Runs each function in its own thread; returns (results, errors) in the same order."""
    results, errors = [None] * len(functions), [None] * len(functions)

    def run(i):
        try:
            results[i] = functions[i]()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(STUCK_S)
        assert not t.is_alive(), "a caller never got its answer"
    return results, errors


def wait_until(condition):
    deadline = time.monotonic() + STUCK_S
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def test_concurrent_callers_each_get_the_unbatched_answers(engine, reference):
    batcher = MicroBatcher(engine, max_batch_size=8, max_wait_ms=5)
    calls = [(q, c) for q, c in EXAMPLES] * 4
    results, errors = call_in_threads(
        [lambda q=q, c=c: batcher.answer_many([q], [c], top_k=2) for q, c in calls]
    )
    assert errors == [None] * len(calls)
    for (q, c), got in zip(calls, results, strict=True):
        assert spans(got) == spans(reference.answer_many([q], [c], top_k=2))
    batcher.close()


def test_requests_queued_while_the_model_is_busy_share_one_padded_call(engine, reference):
    batcher = MicroBatcher(engine, max_batch_size=64, max_wait_ms=0, max_padding=float("inf"))
    backend = engine.backend
    backend.release.clear()
    first = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    first.start()
    assert backend.entered.wait(STUCK_S)  # the model thread is now busy with the first request

    short, long_, other = EXAMPLES[2], EXAMPLES[3], EXAMPLES[4]
    waiting = [lambda ex=ex: batcher.answer_many([ex[0]], [ex[1]]) for ex in (short, long_, other)]
    results = [None] * 3
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, waiting[i]())) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending() == 3)
    backend.release.set()
    for t in [first, *threads]:
        t.join(STUCK_S)

    windows = [engine.windower.windows([q], [c]) for q, c in (short, long_, other)]
    longest = max(len(w) for per in windows for w in per)
    assert len(backend.shapes) == 2
    assert backend.shapes[1] == (sum(len(per) for per in windows), longest)
    # Shorter windows are right-padded: their attention mask ends in zeros.
    assert (backend.masks[1].sum(axis=1) < longest).any()
    assert list(batcher.batch_sizes) == [1, sum(len(per) for per in windows)]
    for example, got in zip((short, long_, other), results, strict=True):
        assert spans(got) == spans(reference.answer_many([example[0]], [example[1]]))
    batcher.close()


def test_a_batch_never_exceeds_the_maximum_size(engine):
    batcher = MicroBatcher(engine, max_batch_size=2, max_wait_ms=0, max_padding=float("inf"))
    backend = engine.backend
    backend.release.clear()
    first = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    first.start()
    assert backend.entered.wait(STUCK_S)
    short_examples = [EXAMPLES[i] for i in (1, 2, 4, 5, 0)]  # one window each
    threads = [threading.Thread(target=batcher.answer, args=ex) for ex in short_examples]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending() == len(short_examples))
    backend.release.set()
    for t in [first, *threads]:
        t.join(STUCK_S)
    assert list(batcher.batch_sizes) == [1, 2, 2, 1]
    batcher.close()


def test_windows_of_very_different_lengths_are_not_padded_together(engine, reference):
    batcher = MicroBatcher(engine, max_batch_size=64, max_wait_ms=0, max_padding=0.25)
    backend = engine.backend
    backend.release.clear()
    first = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    first.start()
    assert backend.entered.wait(STUCK_S)
    short, long_ = EXAMPLES[2], EXAMPLES[3]
    results = [None, None]
    threads = [
        threading.Thread(target=lambda i=i, ex=ex: results.__setitem__(i, batcher.answer(*ex)))
        for i, ex in enumerate((short, long_))
    ]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending() == 2)
    backend.release.set()
    for t in [first, *threads]:
        t.join(STUCK_S)
    short_len = len(engine.windower.windows([short[0]], [short[1]])[0])
    # The short window got a call of its own, padded to its own length, not to 384.
    assert (1, short_len) in backend.shapes[1:]
    for shape, mask in zip(backend.shapes, backend.masks, strict=True):
        real = int(mask.sum())
        assert shape[0] * shape[1] <= 1.25 * real
    for example, got in zip((short, long_), results, strict=True):
        assert spans([got]) == spans([reference.answer(*example)])
    batcher.close()


@given(st.lists(st.integers(min_value=1, max_value=384), max_size=40), st.sampled_from([0.0, 0.1, 0.25, 1.0]))
def test_padding_groups_cover_every_window_once_within_the_padding_bound(lengths, max_padding):
    groups = padding_groups(lengths, max_padding)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        sizes = [lengths[i] for i in group]
        assert len(group) == 1 or max(sizes) * len(sizes) <= (1 + max_padding) * sum(sizes) + 1e-9


def test_a_model_failure_reaches_only_the_caller_whose_input_caused_it(tiny_bert_dir, reference):
    engine = QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1)
    poison_word = "zebra"
    poison_id = int(engine.windower.windows([poison_word], ["x"])[0].input_ids[1])  # after [CLS]
    assert all(poison_word not in q + c for q, c in EXAMPLES)
    engine.backend = RecordingBackend(engine.backend, poison_id=poison_id)
    batcher = MicroBatcher(engine, max_batch_size=64, max_wait_ms=0, max_padding=float("inf"))
    backend = engine.backend
    backend.release.clear()
    first = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    first.start()
    assert backend.entered.wait(STUCK_S)
    requests = [EXAMPLES[1], (f"Where is the {poison_word}?", "The zebra is in the hall."), EXAMPLES[2]]
    results = [None] * 3
    errors = [None] * 3

    def ask(i):
        try:
            results[i] = batcher.answer(*requests[i])
        except FloatingPointError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending() == 3)
    backend.release.set()
    for t in [first, *threads]:
        t.join(STUCK_S)
    assert [e is not None for e in errors] == [False, True, False]
    assert "poisoned" in str(errors[1])
    for i in (0, 2):
        assert spans([results[i]]) == spans([reference.answer(*requests[i])])
    batcher.close()


def test_bad_input_raises_in_the_caller_and_does_not_stall_the_next_request(engine):
    batcher = MicroBatcher(engine, max_batch_size=8, max_wait_ms=60_000)
    with pytest.raises(ValueError, match="same length"):
        batcher.answer_many(["one", "two"], ["only one context"])
    # A lone request must not wait the 60 s for callers that will never come.
    results, errors = call_in_threads([lambda: batcher.answer(*EXAMPLES[1])])
    assert errors == [None] and results[0]
    batcher.close()


def test_lone_request_is_not_held_for_the_wait(engine):
    batcher = MicroBatcher(engine, max_batch_size=8, max_wait_ms=60_000)
    started = time.monotonic()
    results, errors = call_in_threads([lambda: batcher.answer(*EXAMPLES[2])])
    assert errors == [None] and results[0]
    assert time.monotonic() - started < STUCK_S
    batcher.close()


def test_empty_context_and_options_behave_like_the_engine(engine, reference):
    batcher = MicroBatcher(engine)
    assert batcher.answer("Anything?", "") == reference.answer("Anything?", "") == []
    q, c = EXAMPLES[3]
    assert spans([batcher.answer(q, c, top_k=4, max_answer_length=3)]) == spans(
        [reference.answer(q, c, top_k=4, max_answer_length=3)]
    )
    assert batcher.params == engine.params and batcher.model_dir == engine.model_dir
    batcher.close()


def test_closed_batcher_refuses_new_requests(engine):
    batcher = MicroBatcher(engine)
    assert batcher.answer(*EXAMPLES[0])
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.answer(*EXAMPLES[0])


def test_settings_come_from_the_environment(engine, monkeypatch):
    monkeypatch.setenv("QA_BATCH_MAX_SIZE", "4")
    monkeypatch.setenv("QA_BATCH_MAX_WAIT_MS", "1.5")
    batcher = MicroBatcher.from_env(engine)
    assert (batcher.max_batch_size, batcher.max_wait_s) == (4, 0.0015)
    assert batcher.max_padding == 0.25
    monkeypatch.setenv("QA_BATCH_MAX_PADDING", "0.5")
    assert MicroBatcher.from_env(engine).max_padding == 0.5
    monkeypatch.setenv("QA_BATCH_MAX_SIZE", "0")
    with pytest.raises(ValueError, match="QA_BATCH_MAX_SIZE"):
        MicroBatcher.from_env(engine)


def test_the_wsgi_engine_is_batched_with_the_environment_settings(tiny_bert_dir, monkeypatch):
    from qa.errors import SettingsError
    from serve.settings import Settings

    # Importing serve.wsgi builds its app from the environment.
    monkeypatch.setenv("QA_MODEL_DIR", str(tiny_bert_dir))
    monkeypatch.setenv("QA_BACKEND", "torch")
    from serve.wsgi import build_engine

    monkeypatch.setenv("QA_BATCH_MAX_SIZE", "3")
    engine = build_engine(Settings(model_dir=tiny_bert_dir, backend="torch"))
    assert isinstance(engine, MicroBatcher) and engine.max_batch_size == 3
    assert engine.backend.name == "torch"
    assert engine.answer(*EXAMPLES[0])
    engine.close()
    monkeypatch.setenv("QA_BATCH_MAX_WAIT_MS", "soon")
    with pytest.raises(SettingsError, match="QA_BATCH_MAX_WAIT_MS='soon'"):
        build_engine(Settings(model_dir=tiny_bert_dir, backend="torch"))


@pytest.mark.parametrize("wait", ["inf", "nan", "1e12", "-1"])
def test_unbounded_or_negative_wait_is_refused_at_start(engine, monkeypatch, wait):
    # An infinite wait would kill the model thread and leave its caller blocked for ever.
    monkeypatch.setenv("QA_BATCH_MAX_WAIT_MS", wait)
    with pytest.raises(ValueError, match="QA_BATCH_MAX_WAIT_MS"):
        MicroBatcher.from_env(engine)


# --- lanes: single-thread sessions side by side under load --------------------------------


def test_a_call_that_starts_while_another_runs_takes_a_lane_and_a_lone_call_takes_the_engine(engine, reference):
    lanes = [RecordingBackend(engine.backend.inner), RecordingBackend(engine.backend.inner)]
    batcher = MicroBatcher(engine, lanes=lanes)
    whole = engine.backend
    whole.release.clear()
    first = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    first.start()
    assert whole.entered.wait(STUCK_S)  # alone: the engine's own backend, with all its threads
    second = batcher.answer(*EXAMPLES[1])  # while the first call is held: the other model thread's lane
    assert [len(lane.shapes) for lane in lanes].count(1) == 1 and len(whole.shapes) == 0
    whole.release.set()
    first.join(STUCK_S)
    third = batcher.answer(*EXAMPLES[2])  # alone again
    assert len(whole.shapes) == 2
    assert (batcher.engine_calls, sum(batcher.lane_calls)) == (2, 1)
    for example, got in ((EXAMPLES[1], second), (EXAMPLES[2], third)):
        assert spans([got]) == spans([reference.answer(*example)])
    batcher.close()


def test_lone_calls_all_run_on_the_first_model_thread(engine):
    # As without lanes: one thread keeps the engine's session (and its cores' caches) warm.
    threads_used = []
    whole = engine.backend

    def spy(inputs):
        threads_used.append(threading.current_thread().name)
        return whole(inputs)

    spy.name, spy.input_names = whole.name, whole.input_names
    engine.backend = spy
    batcher = MicroBatcher(engine, lanes=[RecordingBackend(whole.inner), RecordingBackend(whole.inner)])
    for example in EXAMPLES * 2:
        batcher.answer(*example)
    assert len(threads_used) >= len(EXAMPLES) * 2
    assert set(threads_used) == {"qa-model-0"}
    batcher.close()


def test_lanes_answer_concurrent_callers_as_the_engine_does(engine, reference):
    lanes = [RecordingBackend(engine.backend.inner), RecordingBackend(engine.backend.inner)]
    batcher = MicroBatcher(engine, lanes=lanes)
    calls = list(EXAMPLES) * 4
    results, errors = call_in_threads([lambda q=q, c=c: batcher.answer(q, c, top_k=2) for q, c in calls])
    assert errors == [None] * len(calls)
    for (q, c), got in zip(calls, results, strict=True):
        assert spans([got]) == spans([reference.answer(q, c, top_k=2)])
    assert batcher.engine_calls + sum(batcher.lane_calls) == len(calls)
    batcher.close()
    assert not any(t.is_alive() for t in batcher._threads)


def test_a_failing_lane_call_reaches_only_its_caller(engine, reference):
    poison_id = int(engine.windower.windows(["zebra"], ["x"])[0].input_ids[1])  # after [CLS]
    lanes = [RecordingBackend(engine.backend.inner, poison_id=poison_id) for _ in range(2)]
    batcher = MicroBatcher(engine, lanes=lanes)
    engine.backend.release.clear()
    held = threading.Thread(target=batcher.answer, args=EXAMPLES[0])
    held.start()
    assert engine.backend.entered.wait(STUCK_S)  # the next calls go to a lane
    with pytest.raises(FloatingPointError, match="poisoned"):
        batcher.answer("Where is the zebra?", "The zebra is in the hall.")
    assert spans([batcher.answer(*EXAMPLES[2])]) == spans([reference.answer(*EXAMPLES[2])])
    engine.backend.release.set()
    held.join(STUCK_S)
    batcher.close()


class _Named:
    def __init__(self, name, threads):
        self.name, self.threads = name, threads


@pytest.mark.parametrize(
    ("name", "threads", "setting", "expected"),
    [
        ("onnx-int8", 2, "auto", 2),
        ("openvino-int8", 2, "auto", 2),
        ("onnx-int8", 16, "auto", AUTO_MAX_LANES),
        ("onnx-int8", 1, "auto", 0),  # one core: nothing to run side by side
        ("torch", 2, "auto", 0),  # torch's threads are one process-wide setting
        ("onnx-fp32", 2, "3", 3),
        ("onnx-int8", 2, "1", 0),  # one lane would only copy the engine's backend
        ("onnx-int8", 2, "0", 0),
        ("torch", 2, "0", 0),
    ],
)
def test_lane_count_follows_the_backend_and_its_threads(name, threads, setting, expected):
    assert lane_count(_Named(name, threads), setting) == expected


@pytest.mark.parametrize(("name", "setting", "message"), [
    ("onnx-int8", "two", "QA_MODEL_LANES must be 'auto' or a whole number from 0 to 64, not 'two'"),
    ("onnx-int8", "-1", "not '-1'"),
    ("onnx-int8", "65", "not '65'"),
    ("torch", "2", "QA_MODEL_LANES=2 needs a backend that runs calls side by side"),
])
def test_bad_lane_settings_are_refused_with_the_value(name, setting, message):
    with pytest.raises(SettingsError, match=message):
        lane_count(_Named(name, 2), setting)
