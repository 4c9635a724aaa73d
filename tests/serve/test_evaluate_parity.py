"""The service and `make evaluate` answer through the same code, so they give the same answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARAGRAPHS = [
    (
        "The Amazon river flows through Brazil, Peru and Colombia. It carries more water than any other "
        "river, and its basin covers about seven million square kilometres.",
        ["Which countries does the Amazon flow through?", "How large is the basin?", "What does it carry?"],
    ),
    (
        "Ada Lovelace wrote the first published algorithm for Charles Babbage's Analytical Engine in 1843. "
        "She is often called the first computer programmer.",
        ["Who wrote the first published algorithm?", "In which year?", "What is she called?"],
    ),
    (
        "東京タワーは1958年に完成した。Its height is 333 metres — Ça reste impressionnant! 🚀",
        ["How tall is it?", "When was it finished?"],
    ),
]


def squad_file(path: Path) -> Path:
    paragraphs = []
    for p, (context, questions) in enumerate(PARAGRAPHS):
        qas = [
            {"id": f"q{p}-{i}", "question": q, "answers": [{"text": context.split()[0], "answer_start": 0}]}
            for i, q in enumerate(questions)
        ]
        paragraphs.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


@pytest.mark.slow
def test_make_evaluate_and_the_http_api_give_the_same_answers(client, tiny_bert_dir, tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    data, out = squad_file(tmp_path / "mini-squad.json"), tmp_path / "eval"
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "evaluate",
            f"PYTHON={sys.executable}",
            f"MODEL={tiny_bert_dir}",
            f"DATA={data}",
            f"OUT={out}",
            "BACKEND=torch",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    predictions = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    served = {}
    for p, (context, questions) in enumerate(PARAGRAPHS):
        for i, question in enumerate(questions):
            response = client.post("/v1/answer", json={"question": question, "context": context})
            assert response.status_code == 200
            served[f"q{p}-{i}"] = response.get_json()["answer"]
    assert served == predictions
