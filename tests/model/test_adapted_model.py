"""The shipped domain-adapted model (models/minilm-l6-policyqa): it serves like the main model, with
the int8 graph `make setup` exported and its gate record, and answers a privacy-policy question from
the words of the policy. The paragraph below was written for this test."""

import json
import os
from pathlib import Path

import pytest

ADAPTED = Path(__file__).resolve().parents[2] / "models" / "minilm-l6-policyqa"
POLICY = ("We collect the name, postal address and email address you give us when you open an account. "
          "We keep this information for as long as your account is open and delete it within 30 days of its "
          "closing. We do not sell your personal information to third parties.")


@pytest.fixture(scope="module")
def adapted_engine():
    from qa.engine import QAEngine

    if not (ADAPTED / "config.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the adapted model is missing: {ADAPTED}")
        pytest.skip(f"the adapted model is missing: {ADAPTED}")
    return QAEngine.from_model_dir(ADAPTED, backend="auto")


def test_it_serves_what_its_gate_records_allow(adapted_engine):
    gate = json.loads((ADAPTED / "gate.json").read_text())
    assert gate["adapt-domain"]["passed"] and gate["adapt-squad"]["passed"] and gate["onnx-fp32"]["passed"]
    # int8 serves only where its gate passed; otherwise the designed fallback is the fp32 graph.
    expected = "onnx-int8" if gate.get("onnx-int8", {}).get("passed") else "onnx-fp32"
    assert adapted_engine.backend.name in (expected, "openvino-int8"), adapted_engine.backend.name


@pytest.mark.parametrize(("question", "words"), [
    ("How long do you keep my data?", "30 days"),
    ("What information do you collect?", "postal address"),
])
def test_it_answers_from_the_policy(adapted_engine, question, words):
    (answer,) = adapted_engine.answer(question, POLICY)
    assert words in answer.text, answer.text
