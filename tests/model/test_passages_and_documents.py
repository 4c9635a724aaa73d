"""The shipped model over many passages and inside a long document: pre-ranking finds the paragraph."""

from test_behaviour import CASES

from qa.params import AnswerOptions

# Paragraphs written for this file that hold none of the answers.
FILLER = [
    "The county fair opens every summer with a parade of tractors along the main road.",
    "Visitors to the old mill can watch the wheel turn and buy flour ground on the spot.",
    "The library runs a reading club for children on Saturday mornings during the school year.",
    "Rain fell for most of the week, and the football match was moved to the indoor hall.",
    "A new cycle path links the railway station with the university campus across the river.",
]
CONTEXTS = list(dict.fromkeys(context for context, _, _ in CASES))
MAX_MISSES = 1  # as in test_behaviour: the model misses at most one of these questions


def test_each_question_finds_its_passage_among_all_of_them(shipped_engine):
    misses = []
    for context, question, accepted in CASES:
        best = shipped_engine.answer(question, CONTEXTS)[0]
        assert CONTEXTS[best.passage][best.start : best.end] == best.text
        if best.text not in accepted or CONTEXTS[best.passage] != context:
            misses.append(f"{question!r} -> {best.text!r} in passage {best.passage}")
    assert len(misses) <= MAX_MISSES, misses


def test_pre_ranking_answers_a_long_document_as_reading_every_window_does(shipped_engine):
    differ, windows = [], []
    for context, question, _ in CASES:
        # About 12,000 characters of filler around the paragraph: some 14 windows, of which 2 to 4 are read.
        document = "\n\n".join(FILLER * 15 + [context] + FILLER * 15)
        every = shipped_engine.windows([question], [document], shipped_engine.resolve(AnswerOptions(max_windows=0)))
        read = shipped_engine.windows([question], [document], shipped_engine.resolve(AnswerOptions(max_windows=2)))
        windows.append((len(read), len(every)))
        ranked = shipped_engine.answer(question, document, max_windows=2)[0]
        whole = shipped_engine.answer(question, document, max_windows=0)[0]
        if (ranked.text, ranked.start) != (whole.text, whole.start):
            differ.append(f"{question!r}: {ranked.text!r} at {ranked.start}, reading all: {whole.text!r}")
    assert all(read <= 4 < every for read, every in windows), windows
    assert not differ, differ
