"""make calibrate on a tiny fixture: the threshold it writes is the one the served decoder applies."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import yaml
from helpers import holding_out

from qa.engine import QAEngine
from qa.model_dir import CALIBRATION_FILE, TRAIN_CONFIG_FILE, load_params
from train.calibrate import calibrate, lowest_threshold_within, score_pairs, wrong_context_pairs
from train.data import load_squad


@pytest.fixture()
def calibration_dir(tiny_bert_dir, tmp_path, fixtures_dir):
    model_dir = holding_out(tiny_bert_dir, tmp_path / "model", fixtures_dir / "tiny_squad.json",
                            ["Lighthouses", "Bakery", "Café", "Rivers"])
    # A SQuAD 2.0-style file: the fixture plus one unanswerable question per article.
    raw = json.loads((fixtures_dir / "tiny_squad.json").read_text())
    v2 = copy.deepcopy(raw)
    for a, article in enumerate(v2["data"]):
        article["paragraphs"][0]["qas"].append(
            {"id": f"impossible-{a}", "question": "What colour was the dragon?", "answers": [], "is_impossible": True})
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    return model_dir, tmp_path / "v2.json"


def test_the_on_topic_rule_scores_both_kinds_of_on_topic_unanswerable_questions(calibration_dir):
    model_dir, _ = calibration_dir
    # A second paragraph in one held-out article gives its questions names to swap in.
    config = yaml.safe_load((model_dir / TRAIN_CONFIG_FILE).read_text())
    raw = json.loads(open(config["data"]["train_file"], encoding="utf-8").read())
    lighthouses = next(a for a in raw["data"] if a["title"] == "Lighthouses")
    lighthouses["paragraphs"].append({"context": "The Cape Mora lighthouse was lit in 1902 by Anton Weiss.", "qas": [
        {"id": "cape-mora", "question": "Who lit the Cape Mora lighthouse?",
         "answers": [{"text": "Anton Weiss", "answer_start": 44}]}]})
    config["data"]["train_file"] = str(model_dir / "train.json")
    (model_dir / "train.json").write_text(json.dumps(raw))
    (model_dir / TRAIN_CONFIG_FILE).write_text(yaml.safe_dump(config))

    report = calibrate(model_dir, parts=["served"], backend="torch", rule="on-topic")["served"]
    assert report["rule"].startswith("best F1 over own-paragraph plus on-topic unanswerable")
    assert report["answer_removed_questions"] > 0 and report["entity_swapped_questions"] > 0
    assert 0 <= report["entity_swapped_abstention_pct"] <= 100
    assert report["null_threshold"] == load_params(model_dir).null_threshold


def test_lowest_threshold_keeps_own_abstention_within_the_rate():
    margins = np.arange(200, dtype=np.float64)  # 0..199
    t = lowest_threshold_within(margins, 0.01)
    assert t == 197.0 and (margins > t).sum() == 2  # exactly 1 % above it, none more
    assert lowest_threshold_within(np.array([3.0, 1.0, 2.0]), 0.01) == 3.0  # 0 of 3 may abstain


def test_wrong_context_pairs_come_from_other_articles(fixtures_dir):
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    contexts = wrong_context_pairs(examples)
    own_article = {e.context: e.title for e in examples}
    assert all(own_article[c] != e.title for e, c in zip(examples, contexts))
    assert contexts == wrong_context_pairs(examples)  # seeded


def test_calibrate_writes_a_threshold_the_engine_applies(calibration_dir):
    model_dir, v2_file = calibration_dir
    report = calibrate(model_dir, backend="torch", v2_file=str(v2_file))
    threshold = load_params(model_dir).null_threshold
    assert report["null_threshold"] == report["served"]["null_threshold"] == threshold
    assert report["served"]["own_abstention_pct"] <= 1.0
    assert report["served"]["questions"] == 11 and report["served"]["articles"] == 4
    assert json.loads((model_dir / CALIBRATION_FILE).read_text())["null_threshold"] == threshold
    v2 = report["squad_v2"]
    assert v2["tune_questions"] + v2["own_threshold"]["questions"] == 17 + 6
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1"} <= set(v2["served_threshold"])
    assert report["v1_dev"]["off"]["f1"] >= 0 and "abstention_pct" in report["wrong_context"]

    # What calibration counted as an abstention is exactly what the served decoder does.
    engine = QAEngine.from_model_dir(model_dir, backend="torch", threads=1)
    examples = load_squad(model_dir / ".." / "v2.json", require_answers=False)
    questions, contexts = [e.question for e in examples], wrong_context_pairs(examples)
    scored = score_pairs(engine, questions, contexts)
    served = engine.answer_many(questions, contexts, handle_impossible_answer=True)
    assert [a[0].text == "" for a in served] == scored.abstains(threshold).tolist()
    assert [a[0].text for a, abstained in zip(served, scored.abstains(threshold)) if not abstained] == [
        s for s, abstained in zip(scored.spans, scored.abstains(threshold)) if not abstained]
    # And at a threshold that splits the pairs, both outcomes agree too.
    middle = float(np.median(scored.margins))
    engine.params = replace(engine.params, null_threshold=middle)
    served = engine.answer_many(questions, contexts, handle_impossible_answer=True)
    mask = scored.abstains(middle)
    assert 0 < mask.sum() < len(mask)
    assert [a[0].text == "" for a in served] == mask.tolist()


def test_a_part_that_does_not_exist_is_named(calibration_dir):
    with pytest.raises(ValueError, match="unknown part\\(s\\) v3"):
        calibrate(calibration_dir[0], parts=["v3"])


def test_best_f1_threshold_against_a_brute_force_search():
    import numpy as np

    from train.calibrate import best_f1_threshold

    rng = np.random.default_rng(0)
    own = rng.normal(-4, 3, 300)
    own_f1 = rng.uniform(0, 1, 300)
    removed = rng.normal(2, 3, 200)

    def f1_at(t: float) -> float:
        return 100 * (own_f1[own <= t].sum() + (removed > t).sum()) / 500

    for lowest in (-np.inf, 0.0, 3.0):
        threshold, f1 = best_f1_threshold(own, own_f1, removed, lowest)
        grid = [t for t in np.concatenate([own, removed, [lowest]]) if np.isfinite(t) and t >= lowest]
        assert threshold >= lowest
        assert f1 == pytest.approx(max(f1_at(t) for t in grid), abs=0.01)
        assert f1 == pytest.approx(f1_at(threshold), abs=0.01)


def test_the_f1_loss_floor_against_a_brute_force_search():
    import numpy as np

    from train.calibrate import lowest_threshold_losing_at_most

    rng = np.random.default_rng(1)
    own = np.concatenate([rng.normal(-4, 3, 400), [np.inf]])  # one question with no valid span
    own_f1 = np.concatenate([rng.uniform(0, 1, 400), [0.0]])
    for budget in (0.0, 0.5, 2.0):
        t = lowest_threshold_losing_at_most(own, own_f1, budget)
        lost = 100 * own_f1[own > t].sum() / len(own)
        assert lost <= budget + 1e-9
        lower = own[np.isfinite(own) & (own < t)]
        if len(lower):  # the next lower threshold would cost more than the budget
            assert 100 * own_f1[own > lower.max()].sum() / len(own) > budget


def test_the_on_topic_rule_never_rises_above_the_own_cap_threshold():
    import numpy as np

    from train.calibrate import Scored, lowest_threshold_within, on_topic_threshold

    rng = np.random.default_rng(2)
    own = Scored([""] * 500, rng.normal(-4, 3, 500))
    for removed_mean in (-10.0, 6.0):  # negatives that look answerable, and ones that are easy to refuse
        removed = Scored([""] * 300, rng.normal(removed_mean, 2, 300))
        threshold, figures = on_topic_threshold(own, rng.uniform(0.5, 1, 500), {"answer_removed": removed})
        assert threshold <= lowest_threshold_within(own.margins)
        assert figures["own_f1_lost"] <= 0.5 or threshold == lowest_threshold_within(own.margins)


def test_the_on_topic_rule_weighs_every_kind_of_unanswerable_question():
    import numpy as np

    from train.calibrate import Scored, best_f1_threshold, on_topic_threshold

    rng = np.random.default_rng(3)
    own = Scored([""] * 400, rng.normal(-6, 2, 400))
    own_f1 = np.where(own.margins < -3, 1.0, 0.1)  # confident answers are right, hesitant ones mostly wrong
    removed = Scored([""] * 200, rng.normal(4, 1, 200))  # refused at the own-cap threshold already
    swapped = Scored([""] * 200, rng.normal(-2, 0.2, 200))  # refusing them costs a few hesitant answers
    alone, _ = on_topic_threshold(own, own_f1, {"answer_removed": removed})
    both, figures = on_topic_threshold(own, own_f1, {"answer_removed": removed, "entity_swapped": swapped})
    assert both < alone  # the swapped questions pull the threshold down
    assert figures["entity_swapped_questions"] == 200 and figures["answer_removed_questions"] == 200
    assert figures["entity_swapped_abstention_pct"] == pytest.approx(100 * np.mean(swapped.margins > both), abs=0.01)
    pooled = np.concatenate([removed.margins, swapped.margins])
    assert figures["own_plus_unanswerable_f1"] == pytest.approx(
        100 * (own_f1[own.margins <= both].sum() + (pooled > both).sum()) / 800, abs=0.01)
    assert both >= best_f1_threshold(own.margins, own_f1, pooled)[0] or figures["own_f1_lost"] <= 0.5
