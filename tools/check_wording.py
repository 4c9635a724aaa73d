"""Fail when the docs or code comments speak of how the work was organised instead of the product.

Text may not name a work session ("session 4", "over three sessions", "this session") or an issue
("issue 12", "#12", "the fast-int8 issue"): a reader has neither. A measured figure names the machine
and the date instead. Scanned: the Markdown docs (docs/, README.md, bench/, deploy/, docker/, the
model cards) and the `#` comments of Python, shell, Makefile, YAML and TOML files.

    .venv/bin/python tools/check_wording.py [ROOT]

Prints `file:line: matched text` per finding and exits 1; exits 0 silently when clean. Stdlib only.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

MARKDOWN_GLOBS = (
    "docs/**/*.md",
    "README.md",
    "bench/README.md",
    "deploy/**/*.md",
    "docker/README.md",
    "models/*/README.md",
)
CODE_DIRS = ("qa", "serve", "train", "bench", "tools", "tests", "docker", "deploy", "configs", ".github")
CODE_SUFFIXES = {".py", ".sh", ".yaml", ".yml", ".toml"}
CODE_NAMES = {"Makefile"}
EXTRA_CODE_FILES = (".ci/run",)
SKIPPED_PARTS = {".git", "outputs", "node_modules"}

NUMBER_WORDS = r"two|three|four|five|six|seven|eight|nine|ten|\d+"

# Each pattern is one way of naming a work session or an issue; the docstrings of check() and of
# tests/test_wording.py give examples. ONNX Runtime's InferenceSession, sess_options, an ONNX Runtime
# session or an HTTP or database session match none of them, and neither does the training ledger's
# own word (sessions.json, "the first session" of a resumed run).
PATTERNS = [
    re.compile(r"\bsessions?[ -]#?\d+", re.IGNORECASE),
    re.compile(r"\b(?:this|next|previous)[ -]sessions?\b", re.IGNORECASE),
    re.compile(rf"\bover (?:{NUMBER_WORDS}) sessions\b", re.IGNORECASE),
    re.compile(rf"\b(?:{NUMBER_WORDS}) sessions\b", re.IGNORECASE),
    re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    re.compile(r"\bthe [a-z0-9-]+ issue\b", re.IGNORECASE),
    # A number after '#' as a reference; not an HTML entity, a colour (hex letters, six or eight
    # digits, or after "color: "), a Markdown anchor with words after the number, or part of a word,
    # URL or quoted value.
    re.compile(r"(?<![&\w#/:=\"'])(?<!: )#(?!\d{6}(?:\d{2})?\b)\d+(?![\w;-])", re.IGNORECASE),
]


def _skipped(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(part in SKIPPED_PARTS or part.startswith(".venv") for part in parts)


def markdown_files(root: Path) -> Iterator[Path]:
    seen: set[Path] = set()
    for pattern in MARKDOWN_GLOBS:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and path not in seen and not _skipped(path, root):
                seen.add(path)
                yield path


def _is_code(path: Path) -> bool:
    return path.suffix in CODE_SUFFIXES or path.name in CODE_NAMES


def code_files(root: Path) -> Iterator[Path]:
    seen: set[Path] = set()
    candidates = [p for p in sorted(root.iterdir()) if p.is_file() and _is_code(p)]
    for name in CODE_DIRS:
        folder = root / name
        if folder.is_dir():
            candidates += [p for p in sorted(folder.rglob("*")) if p.is_file() and _is_code(p)]
    candidates += [root / name for name in EXTRA_CODE_FILES if (root / name).is_file()]
    for path in candidates:
        if path not in seen and not _skipped(path, root):
            seen.add(path)
            yield path


def python_comments(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every `#` comment, from the tokenizer, so a '#' inside a string is no comment."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                yield token.start[0], token.string
    except (tokenize.TokenError, SyntaxError):
        yield from hash_comments(text)


def hash_comments(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of `#` comments in shell, Makefile, YAML and TOML: a '#' at the start of a line or
    after whitespace, outside quotes."""
    for number, line in enumerate(text.splitlines(), 1):
        quote = ""
        for index, char in enumerate(line):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char == "#" and (index == 0 or line[index - 1].isspace()):
                yield number, line[index:]
                break


def findings_in(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(line, matched text); matches that overlap on a line are reported once, as their union."""
    for number, line in lines:
        body = line.lstrip("#")
        offset = len(line) - len(body)
        spans = sorted(m.span() for pattern in PATTERNS for m in pattern.finditer(body))
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            yield number, line[offset + start:offset + end]


def check(root: Path | str) -> list[str]:
    """Every finding under root as `file:line: matched text`, in file order.

    Flagged: "session 4", "sessions 4 and 5", "the session-5 machine", "this session", "next session",
    "over three sessions", "issue 12", "issue #12", "see #12", "the fast-int8 issue". Not flagged:
    "&#34;", "#fff", "color: #000", "an ONNX Runtime session", "InferenceSession", "sess_options".
    """
    root = Path(root).resolve()
    found: list[str] = []
    for path in markdown_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = enumerate(text.splitlines(), 1)
        found += [f"{path.relative_to(root)}:{n}: {m}" for n, m in findings_in(lines)]
    for path in code_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        comments = python_comments(text) if path.suffix == ".py" else hash_comments(text)
        found += [f"{path.relative_to(root)}:{n}: {m}" for n, m in findings_in(comments)]
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    found = check(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
