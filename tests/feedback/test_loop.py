"""The whole loop on a tiny model: feedback through the HTTP API on questions the champion gets wrong,
export, make adapt (train, two verdicts against the champion, promotion), and the new champion,
served from the registry, answers them right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_tiny_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NAME = "tiny-loop"
# Written for this test: each question's right answer, and its paragraph.
CASES = [
    ("Who keeps the harbour light?", "Agnes Morrow keeps the harbour light. The ferry leaves at noon.", "Agnes Morrow"),
    ("When does the ferry leave?", "Agnes Morrow keeps the harbour light. The ferry leaves at noon.", "noon"),
    ("What colour is the tower?", "The tower is painted red. Its lamp was lit in 1874.", "red"),
    ("When was the lamp lit?", "The tower is painted red. Its lamp was lit in 1874.", "1874"),
]


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    return result


def test_feedback_export_adapt_promote_and_serve(tmp_path, fixtures_dir):
    from qa.engine import QAEngine
    from serve.app import create_app
    from serve.settings import Settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "DISABLE_MLFLOW_INTEGRATION"}
    env.update(MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    preprocessing = {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 24}

    # The champion: a tiny model trained a little on the fixture, gated and registered.
    base = make_tiny_model(tmp_path / "base", "bert")
    champion = tmp_path / "champion"
    data = str(fixtures_dir / "tiny_squad.json")
    (tmp_path / "champion.yaml").write_text(yaml.safe_dump({
        "model": {"name_or_path": str(base)}, "data": {"train_file": data, "validation_file": data},
        "preprocessing": preprocessing,
        "training": {"output_dir": str(champion), "learning_rate": 3.0e-3, "num_train_epochs": 1,
                     "per_device_train_batch_size": 8, "eval_each_epoch": False},
        "gate": {"exact_match": 0.0, "f1": 0.0}, "tracking": {"experiment": "loop", "registered_model": NAME}}))
    assert run(env, "train.train", "--config", str(tmp_path / "champion.yaml")).returncode == 0
    gated = run(env, "train.gate", "--model", str(champion), "--backend", "torch")
    assert gated.returncode == 0, gated.stdout + gated.stderr

    # Users mark its answers wrong and give the right words, through the HTTP API.
    feedback_db = f"sqlite:///{tmp_path / 'feedback.db'}"
    settings = Settings(model_dir=champion, backend="torch", feedback=True, feedback_url=feedback_db)
    client = create_app(QAEngine.from_model_dir(champion, backend="torch", threads=1), settings).test_client()
    wrong_before = 0
    for question, context, right in CASES:
        answer = client.post("/v1/answer", json={"question": question, "context": context}).get_json()
        start = context.index(right)
        if answer["answer"] != right:
            wrong_before += 1
            body = {"question": question, "context": context, "verdict": "wrong",
                    "answer": {"start": answer["start"], "end": answer["end"]},
                    "correction": {"start": start, "end": start + len(right)}}
            if (answer["start"], answer["end"]) == (start, start + len(right)):
                continue
        else:
            body = {"question": question, "context": context, "answer": {"start": start, "end": start + len(right)},
                    "verdict": "correct"}
        assert client.post("/v1/feedback", json=body).status_code == 201
    assert wrong_before >= 3  # an untrained-sized model gets most of them wrong

    # Export, then adapt the champion on the feedback (as domain train and dev), SQuAD fixture replayed.
    exported = run(env, "feedback.export", "--url", feedback_db, "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    domain = str(tmp_path / "export" / "feedback-squad.json")
    (tmp_path / "adapt.yaml").write_text(yaml.safe_dump({
        "model": {"name_or_path": "placeholder"},
        "data": {"train_file": domain, "validation_file": domain, "replay_file": data, "replay_fraction": 0.5},
        "preprocessing": preprocessing,
        "training": {"output_dir": str(tmp_path / "adapted"), "learning_rate": 1.0e-2, "num_train_epochs": 150,
                     "per_device_train_batch_size": 8, "warmup_ratio": 0.0, "eval_each_epoch": False,
                     "save_total_limit": 1},
        # A handful of questions cannot show "better beyond noise" with any confidence: the rule here is
        # not_worse; the SQuAD drop bound is wide because the tiny model's fixture score is noise itself.
        "gate": {"exact_match": 0.0, "f1": 0.0, "champion": "not_worse"},
        "adapt": {"squad_validation_file": data, "max_squad_f1_drop": 100.0, "backend": "torch"},
        "tracking": {"experiment": "loop", "registered_model": NAME}}))
    adapted = run(env, "train.adapt", "--config", str(tmp_path / "adapt.yaml"), "--data", domain, "--dev", domain)
    assert adapted.returncode == 0, adapted.stdout[-3000:] + adapted.stderr[-3000:]
    assert "domain verdict" in adapted.stdout and "squad verdict" in adapted.stdout and "PROMOTED" in adapted.stdout
    records = json.loads((tmp_path / "adapted" / "gate.json").read_text())
    assert records["adapt-domain"]["passed"] and records["adapt-squad"]["passed"]
    assert records["adapt-domain"]["champion"]["champion"] == str(champion.resolve())
    assert records["adapt-squad"]["champion"] is not None  # the SQuAD verdict compared with the champion too
    assert any(c["metric"] == "f1_drop_vs_champion" for c in records["adapt-squad"]["checks"])
    assert run(env, "train.card", "--model", str(tmp_path / "adapted")).returncode == 0
    card = (tmp_path / "adapted" / "README.md").read_text()
    assert "## Adaptation verdicts" in card and "adapted by `make adapt`" in card
    assert card.count("| passed |") >= 2 and "| nan |" not in card

    # The registry's champion is now the adapted model, whose parent is the first champion; served, it
    # answers the questions the users corrected.
    resolved = run(env, "train.tracking", "resolve", f"models:/{NAME}@champion")
    assert resolved.returncode == 0 and Path(resolved.stdout.strip()) == (tmp_path / "adapted").resolve()
    import mlflow

    client_ml = mlflow.MlflowClient(uri)
    version = client_ml.get_model_version_by_alias(NAME, "champion")
    assert version.tags["parent_version"] == "1"
    served = create_app(QAEngine.from_model_dir(Path(resolved.stdout.strip()), backend="torch", threads=1),
                        Settings(model_dir=Path(resolved.stdout.strip()), backend="torch")).test_client()
    for question, context, right in CASES:
        assert served.post("/v1/answer", json={"question": question, "context": context}).get_json()["answer"] == right
