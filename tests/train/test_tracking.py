"""MLflow tracking and the registry, offline, on a temporary sqlite store: a training run and its
resume are one run; a passing gate moves the alias, a refused one tags the version; the alias resolves."""

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
FIRST_STEPS = 6  # 2 epochs x 3 steps of the fixture
NAME = "tiny-qa"


def write_config(path: Path, base: Path, out: Path, fixtures_dir: Path, epochs: int, **gate) -> Path:
    data = str(fixtures_dir / "tiny_squad.json")
    path.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(base)},
        "data": {"train_file": data, "validation_file": data},
        "preprocessing": {"max_seq_length": 64, "doc_stride": 16, "max_query_length": 24},
        "training": {"output_dir": str(out), "learning_rate": 3.0e-3, "num_train_epochs": epochs,
                     "per_device_train_batch_size": 8, "warmup_ratio": 0.0, "logging_steps": 1,
                     "save_total_limit": 2, "eval_each_epoch": False},
        "gate": {"exact_match": 0.0, "f1": 0.0, **gate},
        "tracking": {"experiment": "tests", "registered_model": NAME},
    }))
    return path


def run_module(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory, fixtures_dir):
    """Trains 2 epochs, resumes to 4, under tracking; returns the paths, env and the run after each session."""
    import mlflow

    root = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "DISABLE_MLFLOW_INTEGRATION"}
    env.update(MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    base = make_tiny_model(root / "base", "bert")
    out = root / "model"
    ok(run_module(env, "train.train", "--config", str(write_config(root / "a.yaml", base, out, fixtures_dir, 2))))
    client = mlflow.MlflowClient(uri)
    first = client.get_run(json.loads((out / "mlflow_run.json").read_text())["run_id"])
    first_curve = [m.step for m in client.get_metric_history(first.info.run_id, "loss")]
    longer = write_config(root / "b.yaml", base, out, fixtures_dir, 4)
    resumed = ok(run_module(env, "train.train", "--config", str(longer), "--resume"))
    second = client.get_run(json.loads((out / "mlflow_run.json").read_text())["run_id"])
    return {"root": root, "uri": uri, "env": env, "base": base, "out": out, "client": client,
            "config": longer, "first": first, "first_curve": first_curve, "second": second,
            "resume_stderr": resumed.stderr}


def test_a_training_run_is_logged_with_its_parameters_curve_and_final_f1(store):
    run = store["first"]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.learning_rate"] == "0.003"
    assert run.data.params["model.name_or_path"] == str(store["base"])
    assert run.data.tags["mlflow.source.git.commit"]
    assert store["first_curve"] == list(range(1, FIRST_STEPS + 1))  # logging_steps 1: every step
    artifacts = {a.path for a in store["client"].list_artifacts(run.info.run_id, "model")}
    assert {"model/metrics.json", "model/qa.json", "model/training_curve.png"} <= artifacts
    assert run.data.tags["weights_sha256"]  # the weights by reference


def test_a_resume_continues_the_same_run(store):
    first, second = store["first"], store["second"]
    assert second.info.run_id == first.info.run_id
    runs = store["client"].search_runs([first.info.experiment_id])
    assert len(runs) == 1
    steps = [m.step for m in store["client"].get_metric_history(second.info.run_id, "loss")]
    assert steps == list(range(1, 2 * FIRST_STEPS + 1))  # the curve goes on where the first session stopped
    metrics = json.loads((store["out"] / "metrics.json").read_text())
    assert second.data.metrics["f1"] == pytest.approx(metrics["f1"])
    assert second.data.metrics["training.global_step"] == 2 * FIRST_STEPS
    assert second.data.params["training.num_train_epochs"] == "2.0"  # parameters are the first session's
    # MLflow refuses a changed parameter in its background logger, which only logs the error.
    assert "Failed to log run data" not in store["resume_stderr"]


def test_a_passing_gate_moves_the_alias_and_a_refused_one_does_not(store, tmp_path, fixtures_dir):
    client = store["client"]
    passed = ok(run_module(store["env"], "train.gate", "--model", str(store["out"]), "--config", str(store["config"])))
    assert "alias 'champion' now points to it" in passed.stdout
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.source == str(store["out"].resolve())
    assert champion.run_id == store["second"].info.run_id
    assert champion.tags["gate.torch"] == "passed"

    strict = write_config(tmp_path / "strict.yaml", store["base"], store["out"], fixtures_dir, 1, exact_match=100.0)
    refused = run_module(store["env"], "train.gate", "--model", str(store["base"]), "--config", str(strict))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{NAME}'")}
    candidate = next(v for v in versions.values() if v.source == str(store["base"].resolve()))
    assert candidate.tags["gate.torch"] == "refused"
    assert candidate.tags["gate.torch.reason"].startswith("exact_match ") and "< 100.00" in candidate.tags[
        "gate.torch.reason"]
    assert client.get_model_version_by_alias(NAME, "champion").version == champion.version

    again = ok(run_module(store["env"], "train.gate", "--model", str(store["out"]), "--config", str(store["config"])))
    assert f"version {champion.version} " in again.stdout  # the same weights keep their version
    assert len(client.search_model_versions(f"name = '{NAME}'")) == len(versions)

    # The champion refused (its own thresholds raised) loses the alias; passing again brings it back.
    strict_champion = write_config(tmp_path / "strict2.yaml", store["base"], store["out"], fixtures_dir, 1, f1=100.0)
    demoted = run_module(store["env"], "train.gate", "--model", str(store["out"]), "--config", str(strict_champion))
    assert demoted.returncode == 1 and "its alias was removed" in demoted.stdout, demoted.stdout + demoted.stderr
    assert "champion" not in client.get_registered_model(NAME).aliases
    ok(run_module(store["env"], "train.gate", "--model", str(store["out"]), "--config", str(store["config"])))
    assert client.get_model_version_by_alias(NAME, "champion").version == champion.version


def test_the_champion_resolves_to_its_directory_and_an_unknown_alias_is_named(store):
    ok(run_module(store["env"], "train.gate", "--model", str(store["out"]), "--config", str(store["config"])))
    found = ok(run_module(store["env"], "train.tracking", "resolve", f"models:/{NAME}@champion"))
    assert Path(found.stdout.strip()) == store["out"].resolve()
    missing = run_module(store["env"], "train.tracking", "resolve", f"models:/{NAME}@nobody")
    assert missing.returncode == 2
    assert f"models:/{NAME}@nobody" in missing.stderr and store["uri"] in missing.stderr
    bad = run_module(store["env"], "train.tracking", "resolve", "outputs/some-dir")
    assert bad.returncode == 2 and "not a registry URI" in bad.stderr


def test_the_champion_is_refused_once_its_weights_change(store, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store["out"], copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    ok(run_module(store["env"], "train.gate", "--model", str(copy), "--config", str(store["config"])))
    assert Path(ok(run_module(store["env"], "train.tracking", "resolve", f"models:/{NAME}@champion")).stdout.strip()) \
        == copy.resolve()
    with (copy / "model.safetensors").open("ab") as weights:  # a later training into the same directory
        weights.write(b"\0")
    changed = run_module(store["env"], "train.tracking", "resolve", f"models:/{NAME}@champion")
    assert changed.returncode == 2 and "changed since it was gated" in changed.stderr


def test_a_store_that_cannot_be_written_stops_training_before_it_starts(store, tmp_path, fixtures_dir):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    out = tmp_path / "model"
    config = write_config(tmp_path / "c.yaml", store["base"], out, fixtures_dir, 1)
    result = run_module({**store["env"], "MLFLOW_TRACKING_URI": uri}, "train.train", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert uri in result.stderr and "cannot be reached or written" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(out.glob("checkpoint-*"))  # nothing trained without its record

    gated = run_module({**store["env"], "MLFLOW_TRACKING_URI": uri}, "train.gate", "--model", str(store["out"]),
                       "--config", str(store["config"]))
    assert gated.returncode == 0, gated.stdout + gated.stderr  # the gate's verdict stands
    assert "warning: the registry was not updated" in gated.stderr and uri in gated.stderr
