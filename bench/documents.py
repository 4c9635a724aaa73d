"""Long documents on a live server: the first and the following questions about one document, and
memory after many distinct documents.

    python -m bench.documents --model DIR --data dev-v1.1.json.gz [--max-windows K] [--chars 100000]
                              [--questions 40] [--documents 1000]
    make bench-documents [MODEL=dir] [K=...]

It starts the server as `make serve` does (gunicorn, serve/gunicorn.conf.py, one worker), builds one
document of --chars characters from the data's paragraphs, and asks --questions of its questions one
after another: the first pays for tokenising and indexing the document, the others find it in the
worker's document cache (qa/documents.py). Then it sends --documents distinct documents (shuffled
paragraphs, about 20,000 characters each, one question each) and reports the server's RSS before and
after (and every 250 documents), with the cache's bound.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import time
from pathlib import Path

from bench.articles import percentile
from bench.loadtest import Server
from qa.documents import DEFAULT_CACHE_BYTES
from train.data import load_squad, references
from train.hardware import cpu_description
from train.metrics.squad_v1 import compute_score

PARAGRAPH_SEPARATOR = "\n\n"


def build_document(paragraphs: list[tuple[str, list]], chars: int) -> tuple[str, list]:
    """Paragraphs joined until the document has `chars` characters (the last one cut), and the
    examples whose paragraph is whole in it."""
    parts, examples, length = [], [], 0
    for context, own in paragraphs:
        room = chars - length
        if room <= 0:
            break
        parts.append(context[:room])
        if len(context) <= room:
            examples.extend(own)
        length += len(parts[-1]) + len(PARAGRAPH_SEPARATOR)
    return PARAGRAPH_SEPARATOR.join(parts)[:chars], examples


class Client:
    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def answer(self, question: str, context: str, max_windows: int | None) -> tuple[dict, float]:
        body = {"question": question, "context": context}
        if max_windows is not None:
            body["max_windows"] = max_windows
        began = time.perf_counter()
        self.connection.request("POST", "/v1/answer", json.dumps(body), {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = json.loads(response.read())
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload}")
        return payload, elapsed

    def metrics(self) -> str:
        self.connection.request("GET", "/metrics")
        return self.connection.getresponse().read().decode()


def cache_lookups(metrics: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith("qa_document_cache_lookups_total{"):
            result = line.split('result="')[1].split('"')[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a SQuAD v1.1 file")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-windows", type=int, help="sent with each question (default: the model's)")
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/long-documents/documents.json"))
    args = parser.parse_args(argv)

    examples = load_squad(args.data)
    by_context: dict[str, list] = {}
    for example in examples:
        by_context.setdefault(example.context, []).append(example)
    paragraphs = list(by_context.items())
    document, asked = build_document(paragraphs, args.chars)
    asked = random.Random(args.seed).sample(asked, min(args.questions, len(asked)))

    server = Server(args.model, args.backend, workers=1, threads=8)
    try:
        ready_s = server.wait_ready()
        client = Client(server.port)
        rss_ready = server.rss_bytes()
        predictions, latencies = {}, []
        for example in asked:
            payload, elapsed = client.answer(example.question, document, args.max_windows)
            predictions[example.id] = payload["answer"]
            latencies.append(elapsed)
        score = compute_score(references(asked), predictions)
        rss_one = server.rss_bytes()
        lookups_one = cache_lookups(client.metrics())
        rng = random.Random(args.seed + 1)
        began = time.perf_counter()
        rss_every_250 = []
        for sent in range(1, args.documents + 1):
            chosen = rng.sample(paragraphs, 20)
            other, own = build_document(chosen, 20_000)
            question = (own or chosen[0][1])[0].question
            client.answer(question, other, args.max_windows)
            if sent % 250 == 0:
                rss_every_250.append(round(server.rss_bytes() / 2**20, 1))
        documents_s = time.perf_counter() - began
        rss_after = server.rss_bytes()
        lookups_after = cache_lookups(client.metrics())
    finally:
        server.stop()
    following = latencies[1:]
    report = {
        "machine": cpu_description(),
        "model": str(args.model),
        "backend": args.backend,
        "max_windows": args.max_windows,
        "document_chars": len(document),
        "questions": len(asked),
        "ready_s": round(ready_s, 2),
        "first_ms": round(latencies[0], 1),
        "following_p50_ms": round(statistics.median(following), 1),
        "following_p95_ms": round(percentile(following, 95), 1),
        "exact_match": round(score["exact_match"], 2),
        "f1": round(score["f1"], 2),
        "cache_lookups_after_one_document": lookups_one,
        "distinct_documents": args.documents,
        "distinct_documents_s": round(documents_s, 1),
        "cache_lookups_after": lookups_after,
        "cache_bound_mib": DEFAULT_CACHE_BYTES / 2**20,
        "rss_ready_mib": round(rss_ready / 2**20, 1),
        "rss_after_one_document_mib": round(rss_one / 2**20, 1),
        "rss_after_distinct_documents_mib": round(rss_after / 2**20, 1),
        "rss_every_250_documents_mib": rss_every_250,
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
