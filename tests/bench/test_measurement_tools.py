"""bench.align and bench.parity: the parts that decide their figures."""

import pytest

from bench.align import Replay, compare_alignment
from bench.parity import compare, difference_kind
from qa.engine import QAEngine
from train.data import load_squad
from train.evaluate import score_examples


def span(start: int, end: int, answer: str) -> dict:
    return {"score": 0.5, "start": start, "end": end, "answer": answer}


@pytest.mark.parametrize(
    ("ours", "theirs", "kind"),
    [
        (span(4, 8, "1874"), span(4, 8, "1874"), "identical"),
        (span(40, 44, "1874"), span(4, 8, "1874"), "same text at another offset"),
        (span(0, 8, "May 1874"), span(4, 8, "1874"), "overlapping: ours is longer"),
        (span(4, 8, "1874"), span(0, 8, "May 1874"), "overlapping: ours is shorter"),
        (span(2, 6, "y 18"), span(4, 10, "1874 a"), "overlapping: shifted"),
        (span(20, 25, "Paris"), span(4, 8, "1874"), "another span"),
        (span(4, 8, "1874"), None, "no answer from the pipeline"),
    ],
)
def test_difference_kinds(ours, theirs, kind):
    assert difference_kind(ours, theirs) == kind


def test_compare_counts_text_and_offsets_apart_and_keeps_one_example_per_kind():
    pairs = [{"id": str(i), "question": f"q{i}"} for i in range(4)]
    ours = {"0": [span(4, 8, "1874")], "1": [span(40, 44, "1874")], "2": [span(0, 8, "May 1874")],
            "3": [span(0, 8, "May 1874")]}
    theirs = {k: [span(4, 8, "1874")] for k in ours}
    report = compare(pairs, ours, theirs)
    assert report["identical_answer_text"] == 0.5 and report["identical_start_end"] == 0.25
    assert report["kinds"] == {"overlapping: ours is longer": 2, "identical": 1, "same text at another offset": 1}
    assert report["examples"]["overlapping: ours is longer"]["id"] == "2"


def test_alignment_comparison_runs_the_model_once_and_scores_as_the_evaluation(tiny_bert_dir, fixtures_dir):
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    plain = QAEngine.from_model_dir(tiny_bert_dir, backend="torch")
    calls = Replay(plain.backend)
    plain.backend = calls
    _, off = score_examples(plain, examples)  # the model's own settings: alignment off
    report = compare_alignment(QAEngine.from_model_dir(tiny_bert_dir, backend="torch"), examples)
    assert report["model_calls"] == calls.model_calls > 0  # the "on" pass replayed every batch
    assert (report["off"]["exact_match"], report["off"]["f1"]) == (round(off["exact_match"], 2), round(off["f1"], 2))


def test_the_parity_file_keeps_no_squad_text():
    from bench.parity import without_text

    example = {"id": "q1", "question": "Who?", "ours": span(4, 8, "1874"), "pipeline": span(0, 8, "May 1874")}
    report = {"settings": {"defaults": {"examples": {"overlapping: ours is shorter": example}}}}
    kept = without_text(report)["settings"]["defaults"]["examples"]["overlapping: ours is shorter"]
    assert kept == {"id": "q1", "ours": {"score": 0.5, "start": 4, "end": 8},
                    "pipeline": {"score": 0.5, "start": 0, "end": 8}}
    assert example["question"] == "Who?"  # the printed report keeps its text


def test_the_targets_compare_each_figure_in_its_own_direction():
    from bench.run import targets

    results = {
        "ratios": {"throughput_c8_vs_baseline": 3.2, "throughput_c8_vs_optimum": 1.05,
                   "service_c8_vs_engine_limit": 0.9},
        "service": {"median_context_single_request": {"p50_ms": 12.5}, "cold_start_s": 0.8,
                    "concurrency_8": {"server_cpu_ms_per_request": 66.0}, "c8_answers_identical_to_c1": 1.0},
        "engine_limit": {"cpu_ms_per_request": 50.0},
        "full_dev": {"f1_drop_vs_fp32": 0.29},
    }
    verdicts = {row["figure"]: row["met"] for row in targets(results)}
    assert verdicts == {
        "c8 throughput vs transformers pipeline": True,
        "c8 throughput vs Optimum ORT int8": False,
        "service c8 throughput vs engine limit": True,
        "server CPU per answer at c8 vs the engine's": False,  # 1.32, lower is better
        "c8 answers identical to c1 (share)": True,
        "c1 p50 ms, median-length dev context": False,  # lower is better
        "F1 drop of the served backend vs fp32 (full dev)": True,
        "cold start to ready, s": True,
    }
    del results["ratios"]["throughput_c8_vs_optimum"]  # --skip-optimum
    assert {row["figure"]: row["met"] for row in targets(results)}["c8 throughput vs Optimum ORT int8"] is None
    reference = {"service": {"median_context_single_request": {"p50_ms": 12.0}}}
    rows = {row["figure"]: row for row in targets(results, reference)}
    row = rows["c1 p50 median context vs the reference run (12.0 ms)"]
    assert (row["measured"], row["met"]) == (1.042, False)
    reference["service"]["median_context_single_request"]["p50_ms"] = 13.0
    assert targets(results, reference)[6]["met"] is True


def test_the_engine_limit_is_the_faster_of_its_two_layouts(tiny_bert_dir, fixtures_dir):
    from bench.run import engine_limit

    examples = load_squad(fixtures_dir / "tiny_squad.json")[:12]
    limit = engine_limit(tiny_bert_dir, "torch", examples, cores=2)
    layouts = {(p["processes"], p["threads_per_process"]): p["throughput_rps"] for p in limit["layouts"]}
    assert set(layouts) == {(2, 1), (1, 2)}
    assert limit["throughput_rps"] == max(layouts.values()) > 0
    assert layouts[(limit["processes"], limit["threads_per_process"])] == limit["throughput_rps"]
    assert limit["requests"] == len(examples)
    assert all(p["cpu_ms_per_request"] > 0 for p in limit["layouts"])
