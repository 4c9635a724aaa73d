"""`QuestionAnswerer`: a drop-in for the question-answering pipeline that transformers 5 removed.

    from qa import QuestionAnswerer

    qa = QuestionAnswerer.from_model_dir("models/minilm-l6-squad")
    qa(question="Who built it?", context="The bridge was built by Roman engineers.")
    # {'score': 0.93, 'start': 24, 'end': 39, 'answer': 'Roman engineers'}

It takes the pipeline's arguments with the pipeline's names and defaults, and returns what the
pipeline returned: one {"score", "start", "end", "answer"} dict, or a list when top_k > 1 or when
several questions are asked (a list of one pair gives a dict, as the pipeline did). The answers
come from the same engine the service and the evaluation use. Two differences, both on purpose:
`score` is the softmax over the n-best spans (the pipeline multiplied a start and an end
probability), and `handle_impossible_answer` abstains by the model's calibrated `null_threshold`
(the pipeline compared raw probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.engine import QAEngine
from qa.params import DEFAULT_DOC_STRIDE, DEFAULT_MAX_SEQ_LENGTH, InvalidParams


@dataclass(frozen=True)
class PipelineArgument:
    """One argument of the pipeline and the engine option it sets."""

    name: str  # the pipeline's name
    option: str | None  # the qa.params.AnswerOptions field; None: handled here
    default: Any
    allowed: str  # for error messages


# None: derived as the pipeline derived it (window_sizes).
ARGUMENTS = (
    PipelineArgument("top_k", "top_k", 1, "an integer >= 1"),
    PipelineArgument("doc_stride", "doc_stride", None, "an integer >= 1 that leaves room for context"),
    PipelineArgument("max_answer_len", "max_answer_length", 15, "an integer >= 1"),
    PipelineArgument("max_seq_len", "max_seq_length", None, "an integer >= 1, at most the model's positions"),
    PipelineArgument("max_question_len", "max_query_length", None, "an integer >= 1"),
    PipelineArgument("handle_impossible_answer", "handle_impossible_answer", False, "True or False"),
    PipelineArgument("align_to_words", "align_to_words", True, "True or False"),
    PipelineArgument("batch_size", None, None, "an integer >= 1 (windows per model call)"),
    # Not the pipeline's: windows read per context (None: the model's setting; 0: every window).
    PipelineArgument("max_windows", "max_windows", None, "0 (every window) or an integer >= 1"),
)
BY_NAME = {a.name: a for a in ARGUMENTS}
DEFAULT_QUESTION_TOKENS = 64


def window_sizes(max_seq_len: int | None, doc_stride: int | None, max_question_len: int | None,
                 max_positions: int | None = None) -> tuple[int, int, int]:
    """(max_seq_len, doc_stride, max_question_len) with the unset ones derived as the pipeline did:
    max_seq_len = min(384, the model's positions), doc_stride = min(max_seq_len // 2, 128); and
    max_question_len = 64, or fewer when a short window needs the room (the pipeline's fast path never
    cut questions; these windows always do, so a window keeps at least a quarter of itself for context)."""
    seq = max_seq_len or min(DEFAULT_MAX_SEQ_LENGTH, max_positions or DEFAULT_MAX_SEQ_LENGTH)
    stride = doc_stride or min(seq // 2, DEFAULT_DOC_STRIDE)
    question = max_question_len or max(1, min(DEFAULT_QUESTION_TOKENS, seq - stride - 3 - seq // 4))
    return seq, stride, question
BY_OPTION = {a.option: a for a in ARGUMENTS if a.option}


class InvalidArgument(ValueError):
    """A call the pipeline would refuse: the message names the argument and what it accepts."""


class NoReadableText(InvalidArgument):
    """A context holds no token the model can read (only control, format or unknown characters)."""

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__(f"context {index} has no readable text for the model (only control, format or "
                         "unknown characters)")


class QuestionAnswerer:
    def __init__(self, engine: QAEngine) -> None:
        self.engine = engine

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, backend: str = "auto", threads: int | None = None):
        return cls(QAEngine.from_model_dir(model_dir, backend=backend, threads=threads))

    def __call__(self, *args, question: str | Sequence[str] | None = None, context: str | Sequence[str] | None = None,
                 passages: Sequence[str | dict] | None = None, **kwargs) -> dict | list:
        """The pipeline's call. Beyond it: `passages=[...]` (strings or {"text", "id"} dicts) with one
        question reads them as one document; each answer then adds "passage": {"index", "id"?}, or
        None when it abstains."""
        passage_ids: list | None = None
        if passages is not None:
            if args or context is not None or not isinstance(question, str):
                raise InvalidArgument("passages= goes with one question= string and no context=")
            texts, passage_ids = _passages(passages)
            questions, contexts, single = [question], [texts], True
        else:
            questions, contexts, single = _pairs(args, question, context)
        unknown = sorted(set(kwargs) - set(BY_NAME))
        if unknown:
            raise InvalidArgument(f"unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(BY_NAME)}")
        values = {a.name: kwargs.get(a.name, a.default) for a in ARGUMENTS}
        values["max_seq_len"], values["doc_stride"], values["max_question_len"] = window_sizes(
            values["max_seq_len"], values["doc_stride"], values["max_question_len"],
            getattr(self.engine, "max_positions", None))
        batch_size = values["batch_size"]
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise InvalidArgument(f"batch_size must be {BY_NAME['batch_size'].allowed}, got {batch_size!r}")
        options = {a.option: values[a.name] for a in ARGUMENTS if a.option}
        if batch_size is not None:  # a QAEngine's; wrappers such as the service's batcher choose their own
            options["batch_size"] = batch_size
        try:
            ranked = self.engine.answer_many(questions, contexts, **options)
        except InvalidParams as exc:
            argument = BY_OPTION.get(exc.field)
            name = argument.name if argument else exc.field
            allowed = f" (allowed: {argument.allowed})" if argument else ""
            problem = exc.problem
            for option, pipeline_argument in BY_OPTION.items():  # the pipeline's names throughout
                problem = problem.replace(f"{option}=", f"{pipeline_argument.name}=")
            raise InvalidArgument(f"{name}: {problem}{allowed}") from None
        empty = [i for i, answers in enumerate(ranked) if not answers]
        if empty:
            raise NoReadableText(empty[0])
        results = [[_as_dict(a, passage_ids) for a in answers] for answers in ranked]
        # The pipeline's shapes: one answer is a dict (even with top_k > 1 when only one survived).
        results = [r[0] if len(r) == 1 else r for r in results]
        return results[0] if single or len(results) == 1 else results


def _as_dict(answer, passage_ids: list | None) -> dict:
    result = {"score": answer.score, "start": answer.start, "end": answer.end, "answer": answer.text}
    if passage_ids is not None:
        result["passage"] = answer.passage_json(passage_ids)
    return result


def _passages(passages) -> tuple[list[str], list]:
    """(texts, ids) of passages given as strings or {"text", "id"} dicts."""
    if isinstance(passages, (str, dict)) or not isinstance(passages, Sequence) or not passages:
        raise InvalidArgument(f"passages must be a non-empty list of strings or {{'text', 'id'}} dicts, "
                              f"got {passages!r:.80}")
    texts, ids = [], []
    for index, passage in enumerate(passages):
        text, passage_id = (passage.get("text"), passage.get("id")) if isinstance(passage, dict) else (passage, None)
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument(f"passages[{index}] must be a non-empty string (or a dict whose 'text' is one), "
                                  f"got {passage!r:.80}")
        texts.append(text)
        ids.append(passage_id)
    return texts, ids


def _pairs(args: tuple, question, context) -> tuple[list[str], list[str], bool]:
    """(questions, contexts, one pair given) from the pipeline's call forms: question=/context=
    (strings or equal-length lists), or {"question", "context"} dicts as positional arguments."""
    if len(args) == 2 and all(isinstance(a, str) for a in args) and question is None and context is None:
        args, question, context = (), args[0], args[1]  # qa("question?", "context"), as the pipeline took
    if args:
        if question is not None or context is not None:
            raise InvalidArgument("pass the pairs either positionally (dicts) or as question=/context=, not both")
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        if not all(isinstance(i, dict) and {"question", "context"} <= set(i) for i in items):
            raise InvalidArgument('positional arguments must be {"question": ..., "context": ...} dicts')
        questions, contexts = [i["question"] for i in items], [i["context"] for i in items]
        single = len(args) == 1 and isinstance(args[0], dict)
    else:
        if question is None or context is None:
            raise InvalidArgument("question and context are both required")
        single = isinstance(question, str) and isinstance(context, str)
        if single:
            questions, contexts = [question], [context]
        elif isinstance(question, str):  # one question over several contexts, as the pipeline allowed
            questions, contexts = [question] * len(context), list(context)
        elif isinstance(context, str):
            questions, contexts = list(question), [context] * len(question)
        else:
            questions, contexts = list(question), list(context)
    if len(questions) != len(contexts):
        raise InvalidArgument(f"question and context must have the same length, got {len(questions)} and "
                              f"{len(contexts)}")
    for name, values in (("question", questions), ("context", contexts)):
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgument(f"{name} must be a non-empty string (or a list of them), got {value!r}")
    return questions, contexts, single
