"""A reviewer at work: ask a running service each question of a labelled file, and give feedback.

    python -m bench.feedback_loop --url http://127.0.0.1:8000 --data domain-train.json [--concurrency 4]
                                  [--key KEY] [--limit N]

For each question, POST /v1/answer, then POST /v1/feedback with the verdict the labels give: `correct`
when the answer matches one of the labelled answers (SQuAD's exact match, after normalising), else
`wrong` with the first labelled span as the correction. What a team with an answer key does when it
reviews the served model on its own documents; the store then holds the model's answers and the
team's verdicts, and `make feedback-export` turns them into training data for `make adapt`.
Prints the counts of verdicts; exit 1 if the service refused any feedback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from train.data import SquadExample, load_squad
from train.metrics.squad_v1 import exact_match_score


class Connection:
    """One keep-alive connection to the service (one per reviewing thread)."""

    def __init__(self, url: str, key: str | None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request("POST", path, json.dumps(body), self.headers)
                response = self.conn.getresponse()
                payload = json.loads(response.read() or b"{}")
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, payload
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def review(connection: Connection, example: SquadExample) -> str:
    """Ask one question and post its verdict; returns the verdict, or 'refused: ...'."""
    status, answer = connection.post("/v1/answer", {"question": example.question, "context": example.context})
    if status != 200:
        return f"refused: answer HTTP {status} {answer.get('error')}"
    given = {"start": answer["start"], "end": answer["end"]}
    body = {"question": example.question, "context": example.context, "answer": given}
    if any(exact_match_score(answer["answer"], gold) for gold in example.answer_texts):
        body["verdict"] = "correct"
    else:
        start = example.answer_starts[0]
        correction = {"start": start, "end": start + len(example.answer_texts[0])}
        if correction == given:  # the same words, only normalised differently: not a wrong answer
            body["verdict"] = "correct"
        else:
            body.update(verdict="wrong", correction=correction)
    status, stored = connection.post("/v1/feedback", body)
    if status != 201:
        return f"refused: feedback HTTP {status} {stored.get('error')}: {stored.get('message')}"
    return body["verdict"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--data", required=True, help="labelled questions (SQuAD JSON)")
    parser.add_argument("--key", help="an API key, when the service asks for one")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    examples = load_squad(args.data)[: args.limit]
    local = threading.local()  # one connection per reviewing thread

    def review_one(example: SquadExample) -> str:
        if not hasattr(local, "connection"):
            local.connection = Connection(args.url, args.key)
        return review(local.connection, example)

    with ThreadPoolExecutor(args.concurrency) as pool:
        verdicts = Counter(pool.map(review_one, examples))
    refused = sum(n for verdict, n in verdicts.items() if verdict.startswith("refused"))
    print(json.dumps({"questions": len(examples), "verdicts": dict(verdicts.most_common())}, indent=2))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
