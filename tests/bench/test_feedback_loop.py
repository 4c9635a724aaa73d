"""bench/feedback_loop.py against a live loopback server: every question of a labelled file gets its
verdict, stored with the answer the service gave and, for a wrong one, the labelled span."""

from __future__ import annotations

import json
import threading

from werkzeug.serving import make_server

from bench.feedback_loop import main
from feedback.store import FeedbackStore
from train.data import load_squad


def test_every_question_gets_the_verdict_its_label_gives(tiny_bert_dir, tmp_path, fixtures_dir, capsys):
    from qa.engine import QAEngine
    from serve.app import create_app
    from serve.settings import Settings

    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    settings = Settings(model_dir=tiny_bert_dir, backend="torch", feedback=True, feedback_url=url)
    app = create_app(QAEngine.from_model_dir(tiny_bert_dir, backend="torch", threads=1), settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data = fixtures_dir / "tiny_squad.json"
    try:
        assert main(["--url", f"http://127.0.0.1:{server.server_port}", "--data", str(data),
                     "--concurrency", "3"]) == 0
    finally:
        server.shutdown()
    report = json.loads(capsys.readouterr().out)
    examples = {(e.question, e.context): e for e in load_squad(data)}
    items = FeedbackStore(url).items(limit=1000)
    assert len(items) == report["questions"] == len(examples) and sum(report["verdicts"].values()) == len(items)
    for item in items:
        example = examples[(item["question"], item["context"])]
        given = item["context"][item["answer_start"]:item["answer_end"]]
        if item["verdict"] == "wrong":  # an untrained model: most answers are wrong, and corrected
            start = example.answer_starts[0]
            assert (item["correction_start"], item["correction_end"]) == (start, start + len(example.answer_texts[0]))
        else:
            assert item["verdict"] == "correct" and given.strip(), given
