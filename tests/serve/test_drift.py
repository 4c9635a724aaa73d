"""The reference profile (train/profile.py) and the drift check (serve/drift.py) on a tiny model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from qa.model_dir import REFERENCE_PROFILE_FILE
from qa.monitoring import SIGNALS, Profile
from serve.app import create_app
from serve.drift import DriftError, difference, live_profile
from train.data import load_squad
from train.profile import write_profile

# A privacy-policy-like text: long, and nothing like the fixture's encyclopaedia paragraphs.
POLICY = " ".join(
    f"Section {i}. We may share the personal information we collect with service providers, advertising partners "
    f"and affiliates for purposes described in this policy, including analytics, security and fraud prevention."
    for i in range(40))


@pytest.fixture()
def profiled_model(tiny_bert_dir, tmp_path, fixtures_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    write_profile(model, str(fixtures_dir / "tiny_squad.json"), backend="torch")
    return model


def test_the_profile_counts_every_question_of_the_data(profiled_model, fixtures_dir):
    profile = Profile.read(profiled_model / REFERENCE_PROFILE_FILE)
    questions = len(load_squad(fixtures_dir / "tiny_squad.json"))
    assert sum(profile.histograms["qa_question_tokens"]) == questions
    assert profile.rates["abstention"][1] == questions
    assert profile.source["questions"] == questions and len(profile.source["data_sha256"]) == 64


def test_live_metrics_read_back_as_the_profile_of_the_same_answers(tiny_engine, tiny_settings, fixtures_dir):
    client = create_app(tiny_engine, tiny_settings).test_client()
    examples = load_squad(fixtures_dir / "tiny_squad.json")
    before, _ = live_profile(client.get("/metrics").get_data(as_text=True))
    items = [{"question": e.question, "context": e.context} for e in examples]
    assert client.post("/v1/answer/batch", json={"items": items}).status_code == 200
    after, versions = live_profile(client.get("/metrics").get_data(as_text=True))
    assert versions == [client.get("/readyz").get_json()["version"]]
    tops = [r[0] for r in tiny_engine.answer_many([e.question for e in examples], [e.context for e in examples])]
    expected = Profile.of_answers(tops, False, tiny_engine.params.low_confidence_score)
    assert difference(after, before).histograms == expected.histograms
    assert after.rates["low_confidence"] == expected.rates["low_confidence"]


def test_other_buckets_on_the_server_are_an_error():
    text = ('# TYPE qa_windows_read histogram\n'
            'qa_windows_read_bucket{version="v",backend="b",le="1.0"} 1\n'
            'qa_windows_read_bucket{version="v",backend="b",le="+Inf"} 1\n')
    with pytest.raises(DriftError, match="qa_windows_read: the server's buckets"):
        live_profile(text)


@pytest.mark.slow
def test_make_drift_flips_from_stable_to_drift_on_a_real_server(profiled_model, fixtures_dir):
    from gunicorn_server import running_server

    examples = load_squad(fixtures_dir / "tiny_squad.json")
    with running_server({"QA_MODEL_DIR": str(profiled_model), "QA_BACKEND": "torch", "WEB_CONCURRENCY": "2",
                         "GUNICORN_THREADS": "2", "QA_THREADS": "1"}) as server:

        def ask(contexts_of, rounds: int) -> None:
            for _ in range(rounds):
                items = [{"question": e.question, "context": contexts_of(e)} for e in examples]
                status, _, body = server.request("POST", "/v1/answer/batch", {"items": items})
                assert status == 200, body

        def drift(*extra: str) -> tuple[int, dict]:
            command = [sys.executable, "-m", "serve.drift", "--url", server.base_url, "--model", str(profiled_model),
                       "--json", *extra]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert result.returncode in (0, 1), result.stderr
            return result.returncode, json.loads(result.stdout)["signals"]

        ask(lambda e: e.context, rounds=7)  # 119 questions like the reference's
        code, signals = drift()
        assert code == 0 and {signals[s.name]["verdict"] for s in SIGNALS} - {"too few observations"} == {"stable"}
        assert signals["qa_context_tokens"]["psi"] == 0.0
        ask(lambda e: POLICY, rounds=7)  # the same questions against long out-of-domain text
        code, signals = drift()
        assert code == 1
        assert signals["qa_context_tokens"]["verdict"] == "drift" and signals["qa_windows_read"]["verdict"] == "drift"
