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
import json
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from bench.run import ANSWER_PATH, Client
from train.data import SquadExample, load_squad
from train.metrics.squad_v1 import exact_match_score


def post(client: Client, path: str, body: dict) -> tuple[int, dict]:
    status, payload = client.post(path, body)
    return status, json.loads(payload or b"{}")


def review(client: Client, example: SquadExample) -> str:
    """Ask one question and post its verdict; returns the verdict, or 'refused: ...'."""
    status, answer = post(client, ANSWER_PATH, {"question": example.question, "context": example.context})
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
    status, stored = post(client, "/v1/feedback", body)
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
    local = threading.local()  # one keep-alive connection per reviewing thread

    def review_one(example: SquadExample) -> str:
        if not hasattr(local, "client"):
            parts = urlsplit(args.url)
            headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
            local.client = Client(parts.port or 80, parts.hostname or "127.0.0.1", headers)
        return review(local.client, example)

    with ThreadPoolExecutor(args.concurrency) as pool:
        verdicts = Counter(pool.map(review_one, examples))
    refused = sum(n for verdict, n in verdicts.items() if verdict.startswith("refused"))
    print(json.dumps({"questions": len(examples), "verdicts": dict(verdicts.most_common())}, indent=2))
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
