"""The benchmark's baseline: `transformers.pipeline("question-answering")` behind Flask + gunicorn.

Runs in its own virtualenv (.venv-baseline, see bench/requirements-baseline.txt): transformers
5.x, which the project uses, no longer ships the question-answering pipeline, so the baseline
uses the last 4.x release. It answers the same route and JSON as the service (POST
/v1/answer, GET /readyz) under the same gunicorn worker/thread settings, so both sides pay the
same HTTP cost. The pipeline gets the service's window settings (384 tokens, stride 128,
question 64, answer 30 tokens) so the accuracy comparison is like for like.

    QA_MODEL_DIR=dir gunicorn --workers W --threads T bench.baseline_wsgi:app
"""

from __future__ import annotations

import os
import threading

import torch
from flask import Flask, jsonify, request
from transformers import pipeline

MODEL_DIR = os.environ["QA_MODEL_DIR"]
MAX_ANSWER_LENGTH = int(os.environ.get("QA_MAX_ANSWER_LENGTH", "30"))


def _threads() -> int:
    if os.environ.get("QA_THREADS"):
        return int(os.environ["QA_THREADS"])
    workers = int(os.environ.get("QA_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 1)
    return max(1, len(os.sched_getaffinity(0)) // workers)


torch.set_num_threads(_threads())
qa = pipeline("question-answering", model=MODEL_DIR, tokenizer=MODEL_DIR, device=-1)
# The pipeline mutates its fast tokenizer's truncation state per call ("Already borrowed" under
# threads), so calls within one worker are serialised.
_lock = threading.Lock()


def _answer(question: str, context: str) -> dict:
    with _lock:
        out = qa(
            question=question,
            context=context,
            max_answer_len=MAX_ANSWER_LENGTH,
            max_seq_len=384,
            doc_stride=128,
            max_question_len=64,
        )
    return {
        "answer": out["answer"],
        "score": float(out["score"]),
        "start": int(out["start"]),
        "end": int(out["end"]),
    }


_answer("What is warmed up?", "The model is warmed up before the first request.")
app = Flask(__name__)


@app.post("/v1/answer")
def answer():
    body = request.get_json(force=True)
    return jsonify(_answer(body["question"], body["context"]))


@app.get("/readyz")
def readyz():
    return jsonify({"status": "ready"})
