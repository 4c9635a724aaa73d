"""train.robustness on a tiny fixture: the held-out figures are counted over the right questions."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from helpers import holding_out

from qa.model_dir import HELDOUT_FILE, ROBUSTNESS_FILE
from train.robustness import main, margin_auc, robustness

HELDOUT_TITLES = ["Lighthouses", "Bakery", "Café", "Rivers"]


def _model_dir_holding_out(tiny_bert_dir, model_dir, raw) -> None:
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    train_file = model_dir.parent / "train.json"
    train_file.write_text(json.dumps(raw))
    holding_out(tiny_bert_dir, model_dir, train_file, HELDOUT_TITLES)


@pytest.fixture()
def heldout_model_dir(tiny_bert_dir, tmp_path, fixtures_dir):
    """The fixture's articles, one of them with a second paragraph: distracting sentences and names to swap."""
    raw = json.loads((fixtures_dir / "tiny_squad.json").read_text())
    lighthouses = next(a for a in raw["data"] if a["title"] == "Lighthouses")
    context = "The Cape Mora lighthouse, east of Harbor Point, was built in 1902 by Anton Weiss."
    lighthouses["paragraphs"].append({"context": context, "qas": [
        {"id": "cape-mora", "question": "Who built the Cape Mora lighthouse?",
         "answers": [{"text": "Anton Weiss", "answer_start": 69}]}]})
    _model_dir_holding_out(tiny_bert_dir, tmp_path / "model", raw)
    return tmp_path / "model"


def _heldout_questions(model_dir) -> int:
    raw = json.loads((model_dir.parent / "train.json").read_text())
    return sum(len(p["qas"]) for a in raw["data"] if a["title"] in HELDOUT_TITLES for p in a["paragraphs"])


def test_every_figure_counts_the_held_out_questions_and_is_written(heldout_model_dir):
    heldout_questions = _heldout_questions(heldout_model_dir)

    report = robustness(heldout_model_dir, backend="torch")

    assert report["articles"] == len(HELDOUT_TITLES)
    assert report["own"]["questions"] == heldout_questions
    removed = report["answer_removed"]
    assert removed["questions"] + removed["skipped"] == heldout_questions and removed["questions"] > 0
    assert 0.0 <= removed["margin_auc"] <= 1.0
    distractor = report["distractor"]
    assert distractor["questions"] > 0 and distractor["questions"] + distractor["skipped"] == heldout_questions
    assert report["entity_swapped"]["questions"] > 0 and 0.0 <= report["entity_swapped"]["margin_auc"] <= 1.0
    assert distractor["f1_change"] == pytest.approx(distractor["f1"] - distractor["own_f1_same_questions"], abs=0.011)
    for threshold in ("served_threshold", "served_rule_threshold"):
        assert all(0.0 <= report[threshold][k] <= 100.0 for k in report[threshold] if k.endswith("_pct"))
    assert json.loads((heldout_model_dir / ROBUSTNESS_FILE).read_text()) == json.loads(json.dumps(report))


def test_articles_of_one_paragraph_give_no_distractor_figures_rather_than_an_error(tiny_bert_dir, tmp_path,
                                                                                   fixtures_dir):
    raw = json.loads((fixtures_dir / "tiny_squad.json").read_text())
    _model_dir_holding_out(tiny_bert_dir, tmp_path / "model", raw)

    report = robustness(tmp_path / "model", backend="torch")

    assert report["distractor"]["questions"] == 0 and report["distractor"]["f1"] is None
    assert report["distractor"]["f1_change"] is None
    assert report["entity_swapped"] == {"questions": 0, "skipped": report["own"]["questions"], "margin_auc": None}
    assert report["served_threshold"]["entity_swapped_pct"] is None
    assert report["own"]["f1"] is not None and report["answer_removed"]["questions"] > 0


def test_a_limit_reads_only_the_first_held_out_questions(heldout_model_dir):
    assert robustness(heldout_model_dir, backend="torch", limit=5)["own"]["questions"] == 5


def test_margin_auc_against_counting_every_pair():
    rng = np.random.default_rng(0)
    answerable = np.round(rng.normal(0.0, 1.0, 40), 1)  # rounded: ties occur and count half
    unanswerable = np.concatenate([np.round(rng.normal(1.0, 1.0, 30), 1), [np.inf]])  # +inf: no span at all
    wins = sum(1.0 if n > p else 0.5 if n == p else 0.0 for p, n in itertools.product(answerable, unanswerable))
    assert margin_auc(answerable, unanswerable) == pytest.approx(wins / (len(answerable) * len(unanswerable)))
    assert margin_auc(np.array([0.0, 1.0]), np.array([2.0, np.inf])) == 1.0
    assert margin_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0


def test_a_model_without_held_out_articles_is_an_error_naming_the_file(heldout_model_dir, capsys):
    (heldout_model_dir / HELDOUT_FILE).unlink()
    assert main(["--model", str(heldout_model_dir), "--backend", "torch"]) == 2
    error = capsys.readouterr().err
    assert str(heldout_model_dir / HELDOUT_FILE) in error and "no held-out article titles" in error
