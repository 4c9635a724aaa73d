"""The benchmark's peers: `transformers.pipeline("question-answering")` behind Flask + gunicorn.

Runs in its own virtualenv (.venv-baseline, see bench/requirements-baseline.txt): transformers
5.x, which the project uses, no longer ships the question-answering pipeline, so the baseline
uses the last 4.x release. It answers the same route and JSON as the service (POST
/v1/answer, GET /readyz) under the same gunicorn worker/thread settings, so both sides pay the
same HTTP cost. The pipeline gets the service's window settings (384 tokens, stride 128,
question 64, answer 30 tokens) so the accuracy comparison is like for like.

With QA_PEER=optimum-int8 the same pipeline runs Hugging Face Optimum's
ORTModelForQuestionAnswering on the int8 graph that bench/optimum_export.py wrote with Optimum's
own quantiser (QA_MODEL_DIR is that folder, QA_TOKENIZER_DIR the model's): the strongest peer a
user would pick instead of this service.

    QA_MODEL_DIR=dir gunicorn --workers W --threads T bench.baseline_wsgi:app
"""

from __future__ import annotations

import os
import threading

import torch
from flask import Flask, jsonify, request
from transformers import pipeline

MODEL_DIR = os.environ["QA_MODEL_DIR"]
TOKENIZER_DIR = os.environ.get("QA_TOKENIZER_DIR", MODEL_DIR)
PEER = os.environ.get("QA_PEER", "pipeline")
MAX_ANSWER_LENGTH = int(os.environ.get("QA_MAX_ANSWER_LENGTH", "30"))


def _threads() -> int:
    if os.environ.get("QA_THREADS"):
        return int(os.environ["QA_THREADS"])
    workers = int(os.environ.get("QA_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 1)
    return max(1, len(os.sched_getaffinity(0)) // workers)


def _model():
    if PEER == "pipeline":
        return MODEL_DIR
    if PEER == "optimum-int8":
        import onnxruntime
        from optimum.onnxruntime import ORTModelForQuestionAnswering

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads()
        return ORTModelForQuestionAnswering.from_pretrained(
            MODEL_DIR, file_name="model_quantized.onnx", session_options=options
        )
    raise SystemExit(f"QA_PEER must be pipeline or optimum-int8, not {PEER!r}")


torch.set_num_threads(_threads())
qa = pipeline("question-answering", model=_model(), tokenizer=TOKENIZER_DIR, device=-1)
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
