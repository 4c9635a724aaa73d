"""Config validation: every mistake names the file and the field."""

from pathlib import Path

import pytest

from train.config import ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def minimal(**overrides):
    raw = {
        "model": {"name_or_path": "some/dir"},
        "data": {"train_file": "t.json", "validation_file": "v.json"},
        "training": {"output_dir": "out"},
        "gate": {"exact_match": 60, "f1": 70},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    return raw


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.gate.f1 > 0
    assert config.training.output_dir


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ConfigError) as err:
        config_from_dict(minimal(**{"training.learnin_rate": 1e-4}), source="x.yaml")
    message = str(err.value)
    assert message.startswith("x.yaml: training.learnin_rate: unknown key")
    assert "learning_rate" in message


def test_unknown_section_is_named():
    raw = minimal()
    raw["trainng"] = {}
    with pytest.raises(ConfigError, match=r"x.yaml: trainng: unknown key \(did you mean 'training'\?\)"):
        config_from_dict(raw, source="x.yaml")


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("training.per_device_train_batch_size", "16", "must be an integer"),
        ("training.learning_rate", "fast", "must be a number"),
        ("training.learning_rate", 2.0, "must be in (0, 1)"),
        ("training.eval_each_epoch", "yes", "must be true or false"),
        ("gate.f1", 120, "between 0 and 100"),
        ("training.per_device_train_batch_size", 0, "must be positive"),
    ],
)
def test_bad_values_name_the_field(field, value, fragment):
    with pytest.raises(ConfigError) as err:
        config_from_dict(minimal(**{field: value}), source="c.yaml")
    assert f"c.yaml: {field}: " in str(err.value)
    assert fragment in str(err.value)


def test_missing_required_key():
    raw = minimal()
    del raw["gate"]["f1"]
    with pytest.raises(ConfigError, match="c.yaml: gate.f1: required key is missing"):
        config_from_dict(raw, source="c.yaml")


def test_yaml_exponent_without_dot_is_a_float():
    assert config_from_dict(minimal(**{"training.learning_rate": "3e-5"})).training.learning_rate == 3e-5


def test_squad_dir_expands_from_environment(monkeypatch):
    monkeypatch.setenv("SQUAD_DIR", "/data/squad")
    config = config_from_dict(minimal(**{"data.train_file": "${SQUAD_DIR}/train.json"}))
    assert config.data.train_file == "/data/squad/train.json"
    monkeypatch.delenv("SQUAD_DIR")
    config = config_from_dict(minimal(**{"data.train_file": "${SQUAD_DIR}/train.json"}))
    assert config.data.train_file == "../shared/data/squad/train.json"


def test_unset_environment_variable_is_an_error(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="data.train_file: environment variable NOT_SET_ANYWHERE is not set"):
        config_from_dict(minimal(**{"data.train_file": "${NOT_SET_ANYWHERE}/t.json"}), source="c.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(path)


def test_data_needs_files_or_dataset_name():
    raw = minimal()
    raw["data"] = {"train_file": "t.json"}
    with pytest.raises(ConfigError, match="set train_file and validation_file, or dataset_name"):
        config_from_dict(raw)


def test_dropout_override_reaches_every_dropout_of_bert_and_distilbert(tiny_bert_dir, tiny_distilbert_dir):
    from transformers import AutoModelForQuestionAnswering

    from train.train import dropout_overrides

    assert dropout_overrides(str(tiny_bert_dir), None) == {}
    for directory, names in ((tiny_bert_dir, {"hidden_dropout_prob", "attention_probs_dropout_prob",
                                              "classifier_dropout"}),
                             (tiny_distilbert_dir, {"dropout", "attention_dropout", "qa_dropout"})):
        overrides = dropout_overrides(str(directory), 0.0)
        assert set(overrides) == names
        model = AutoModelForQuestionAnswering.from_pretrained(str(directory), **overrides)
        probabilities = {m.p for m in model.modules() if isinstance(m, torch_dropout())}
        assert probabilities == {0.0}, probabilities


def torch_dropout():
    import torch

    return torch.nn.Dropout


def test_dropout_must_be_a_probability(tmp_path):
    import yaml

    from train.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name_or_path": "x", "dropout": 1.5},
                                    "data": {"train_file": "a", "validation_file": "b"},
                                    "training": {"output_dir": "o"}, "gate": {"exact_match": 1, "f1": 1}}))
    with pytest.raises(ConfigError, match=r"model\.dropout: must be in \[0, 1\), got 1.5"):
        load_config(path)
