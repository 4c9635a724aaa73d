"""Hand-written questions (not from SQuAD) the shipped model must answer, plus invariances."""

import pytest

# (context, question, accepted answers). Every context is written for this file.
CASES = [
    ("The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt.",
     "When was the Harbor Point lighthouse built?", {"1874"}),
    ("The Harbor Point lighthouse was built in 1874 by the engineer Miriam Holt.",
     "Who built the Harbor Point lighthouse?", {"Miriam Holt", "the engineer Miriam Holt"}),
    ("Every morning the bakery on Elm Street sells rye bread. The baker, Tomas Varga, starts work at four o'clock.",
     "What is the name of the baker?", {"Tomas Varga"}),
    ("The Velka river flows 412 kilometres from the Tarn mountains to the Grey Sea.",
     "How long is the Velka river?", {"412 kilometres"}),
    ("The Velka river flows 412 kilometres from the Tarn mountains to the Grey Sea.",
     "Into which sea does the Velka river flow?", {"the Grey Sea", "Grey Sea"}),
    ("Marta Ilves founded the Ostrava Film Festival in 1998. The festival is held every October.",
     "Who founded the Ostrava Film Festival?", {"Marta Ilves"}),
    ("Marta Ilves founded the Ostrava Film Festival in 1998. The festival is held every October.",
     "In which month is the festival held?", {"October", "every October"}),
    ("The company moved its headquarters from Leeds to Manchester in 2011 to be closer to its largest customers.",
     "Why did the company move its headquarters?",
     {"to be closer to its largest customers", "closer to its largest customers"}),
    ("The company moved its headquarters from Leeds to Manchester in 2011 to be closer to its largest customers.",
     "Where is the company's headquarters now?", {"Manchester"}),
    ("The recipe needs three eggs, two cups of flour and a pinch of salt.",
     "How many eggs does the recipe need?", {"three", "three eggs"}),
    ("The planet Kepler-22b orbits a star about 600 light-years from Earth.",
     "How far from Earth is the star?", {"about 600 light-years", "600 light-years"}),
    ("Nikola Petrov played the violin in the city orchestra, while his sister Vera played the cello.",
     "Which instrument did Vera play?", {"the cello", "cello"}),
    ("The bridge was closed for repairs after a storm damaged its northern pillar in March 2019.",
     "What damaged the bridge?", {"a storm", "storm"}),
    ("Greenfield Library opened in 1921 and holds more than 40,000 books, most of them donated by local families.",
     "How many books does Greenfield Library hold?", {"more than 40,000", "more than 40,000 books", "40,000"}),
    ("The chess champion Ada Brennan has won the county title three times.",
     "How many times has Ada Brennan won the county title?", {"three times", "three"}),
]


# The interim model (43 % of its epoch) misses one: "Where is the company's headquarters now?"
# -> "Leeds to Manchester" (at 22 % it also answered "northern pillar" for what damaged the bridge).
# Lower this as it improves.
MAX_MISSES = 1


def test_answers_hand_written_questions(ask):
    misses = []
    for context, question, accepted in CASES:
        best = ask(question, context)
        assert context[best.start:best.end] == best.text
        if best.text not in accepted:
            misses.append(f"{question!r} -> {best.text!r}")
    assert len(misses) <= MAX_MISSES, f"{len(misses)} of {len(CASES)} wrong: {misses}"


UNRELATED = " The weather in the valley is usually mild in spring."


@pytest.mark.parametrize("context, question, accepted", CASES[:8], ids=[c[1] for c in CASES[:8]])
def test_answer_survives_an_unrelated_sentence(ask, context, question, accepted):
    before, after = ask(question, context).text, ask(question, context + UNRELATED).text
    # A right answer must stay right; it may move between accepted spans that score nearly the same
    # ("to be closer ..." 0.28 vs "closer ..." 0.32 swap places with the extra sentence even in fp32).
    assert after in accepted if before in accepted else after == before


@pytest.mark.parametrize("context, question, accepted", CASES[:8], ids=[c[1] for c in CASES[:8]])
def test_answer_ignores_question_casing(ask, context, question, accepted):
    # The base model's tokenizer lower-cases, so casing must not change the answer.
    assert ask(question.upper(), context).text == ask(question.lower(), context).text == ask(question, context).text


@pytest.mark.parametrize("context, question, expected", [
    ("Le café   Zoë à Montréal a ouvert en 1987. Its owner, Zoë Lefèvre, trained in Lyon.",
     "Where did Zoë Lefèvre train?", "Lyon"),
    ("北京 has an old observatory 🌟. The astronomer Chen Wei catalogued 1,200 stars there in 1720.",
     "Who catalogued the stars?", "Chen Wei"),
    ("Ünal Çelik, née Öztürk, opened the Straße 9 gallery in Köln in 2004.",
     "In which city is the gallery?", "Köln"),
])
def test_exact_offsets_on_unicode_contexts(ask, context, question, expected):
    best = ask(question, context)
    assert best.text == expected
    assert (best.start, best.end) == (context.index(expected), context.index(expected) + len(expected))
