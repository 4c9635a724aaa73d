"""make adapt's weight-space ensemble with the champion: each weight is the given mix of the two, the
metrics are scored again, and it happens once."""

import json

import numpy as np
import pytest
from helpers import make_tiny_model
from safetensors.numpy import load_file

from train.adapt import mix_with_champion
from train.config import ConfigError, config_from_dict


def test_weights_are_the_mix_and_the_metrics_are_scored_again(tmp_path, fixtures_dir):
    adapted = make_tiny_model(tmp_path / "adapted", seed=1)
    champion = make_tiny_model(tmp_path / "champion", seed=2)
    (adapted / "metrics.json").write_text(json.dumps({"exact_match": 1.0, "f1": 2.0, "training": {"complete": True}}))
    before, theirs = load_file(adapted / "model.safetensors"), load_file(champion / "model.safetensors")
    metrics = mix_with_champion(adapted, champion, 0.25, str(fixtures_dir / "tiny_squad.json"), "torch")
    after = load_file(adapted / "model.safetensors")
    for name in before:
        np.testing.assert_allclose(after[name], 0.75 * before[name] + 0.25 * theirs[name], rtol=1e-5, atol=1e-6)
    assert metrics["weight_ensemble"]["champion_share"] == 0.25 and metrics["weight_ensemble"]["before"]["f1"] == 2.0
    assert metrics["questions"] == 17 and json.loads((adapted / "metrics.json").read_text()) == metrics
    mix_with_champion(adapted, champion, 0.25, str(fixtures_dir / "tiny_squad.json"), "torch")  # a second call
    np.testing.assert_array_equal(load_file(adapted / "model.safetensors")["qa_outputs.weight"],
                                  after["qa_outputs.weight"])


def test_a_champion_of_another_shape_is_refused(tmp_path, fixtures_dir):
    import torch
    from transformers import AutoModelForQuestionAnswering, BertConfig

    adapted = make_tiny_model(tmp_path / "adapted")
    (adapted / "metrics.json").write_text(json.dumps({"exact_match": 1.0, "f1": 2.0}))
    torch.manual_seed(0)
    other = AutoModelForQuestionAnswering.from_config(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2,
                                                                 num_attention_heads=2, intermediate_size=32))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="does not hold the same tensors"):
        mix_with_champion(adapted, tmp_path / "other", 0.5, str(fixtures_dir / "tiny_squad.json"), "torch")


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_share_out_of_range_names_the_field(share):
    raw = {"model": {"name_or_path": "m"}, "data": {"train_file": "t.json", "validation_file": "v.json"},
           "training": {"output_dir": "o"},
           "gate": {"exact_match": 0.0, "f1": 0.0}, "adapt": {"champion_weight_share": share}}
    with pytest.raises(ConfigError, match="adapt.champion_weight_share: must be at least 0 and below 1"):
        config_from_dict(raw, "adapt.yaml")
