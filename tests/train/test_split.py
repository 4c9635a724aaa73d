"""train.split: by article, seeded, nothing lost, nothing shared."""

import json

import pytest

from train.data import load_squad
from train.split import split_file


def test_a_split_by_article_loses_and_shares_nothing(tmp_path, fixtures_dir):
    source = fixtures_dir / "tiny_squad.json"
    report = split_file(source, 0.5, seed=13, out=tmp_path)
    train, dev = load_squad(tmp_path / "train.json"), load_squad(tmp_path / "dev.json")
    assert {e.title for e in train}.isdisjoint({e.title for e in dev})
    assert sorted(e.id for e in train + dev) == sorted(e.id for e in load_squad(source))
    assert report["dev"]["questions"] == len(dev)
    assert json.loads((tmp_path / "split.json").read_text())["dev"]["articles"] == sorted({e.title for e in dev})
    assert split_file(source, 0.5, seed=13, out=tmp_path / "again") == report  # seeded


def test_bad_fractions_are_refused(tmp_path, fixtures_dir):
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_file(fixtures_dir / "tiny_squad.json", 1.0, seed=1, out=tmp_path)
