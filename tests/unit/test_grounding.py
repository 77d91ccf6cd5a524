"""The grounding check: citations parsed robustly, each sentence judged against what it cites.

The embedder is a bag-of-words stand-in here (the check takes any function of texts); the
packaged MiniLM runs in tests/io/test_composer.py."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest

from tasks.core.grounding import (
    LOW_EMBEDDING,
    LOW_LEXICAL,
    NO_CITATION,
    UNKNOWN_CITATION,
    CitedSentence,
    GroundingBounds,
    check_grounding,
    labels_to_ids,
    lexical_support,
    numbered_messages,
    parse_cited,
    render,
    says_nothing_found,
)

VOCAB: dict[str, int] = {}


def bag_of_words(texts: Sequence[str]) -> np.ndarray:
    """Counts of words over a growing vocabulary: cosine = word overlap."""
    rows = []
    for text in texts:
        row = np.zeros(512, dtype=np.float32)
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            row[VOCAB.setdefault(word, len(VOCAB) % 512)] += 1
        rows.append(row)
    return np.stack(rows)


EVIDENCE = {
    "c1": "Methotrexate was associated with elevated transaminases in 12 of 40 patients. "
    "Two patients developed hepatic fibrosis.",
    "c2": "Oral methotrexate was given weekly at 15 mg.",
}
BOUNDS = GroundingBounds(min_lexical=0.6, min_embedding=0.3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Liver injury occurred [1]. Dosing was weekly [2].", [("1",), ("2",)]),
        ("Liver injury occurred. [1] Dosing was weekly. [2]", [("1",), ("2",)]),
        ("Both were seen [1, 3]. Ranged [2-4].", [("1", "3"), ("2", "3", "4")]),
        ("Repeated [1][2] marks.", [("1", "2")]),
        ("Named [chunk 2] and [Source 3].", [("2", "3")]),
        ("No citation at all.", [()]),
        ("[1] Liver injury occurred. [3] Dosing was weekly.", [("1",), ("3",)]),
        ("[2] Injury occurred. It was mild.\n[1] Dosing was weekly", [("2",), ("2",), ("1",)]),
        ("[1][2] Both saw it. Then [3] a middle marker.", [("1", "2"), ("3",)]),
    ],
)
def test_parse_cited_reads_markers_wherever_the_model_puts_them(text, expected):
    assert [s.cited for s in parse_cited(text)] == expected
    assert all("[" not in s.text for s in parse_cited(text))


def test_brackets_of_the_passages_own_text_are_words_not_citations():
    (sentence,) = parse_cited("Cisplatin, cis-[PtCl2(NH3)2], labels [3H]thymidine [2].")
    assert sentence.cited == ("2",)
    assert sentence.text == "Cisplatin, cis-[PtCl2(NH3)2], labels [3H]thymidine."
    (invented,) = parse_cited("Aspirin is safe [Smith et al.].")
    assert invented.cited == ()  # an invented reference is no citation: NO_CITATION


def test_labels_map_to_evidence_ids_and_an_out_of_range_number_stays_unknown():
    sentences = labels_to_ids(parse_cited("A [1]. B [2]. C [7]."), ["c1", "c2"])
    assert [s.cited for s in sentences] == [("c1",), ("c2",), ("7",)]


def test_supported_sentences_pass_and_the_share_is_one():
    claims = [
        CitedSentence("Methotrexate was associated with elevated transaminases.", ("c1",)),
        CitedSentence("Two patients developed hepatic fibrosis.", ("c1",)),
    ]
    grounding = check_grounding(claims, EVIDENCE, bag_of_words, BOUNDS)
    assert grounding.fully_grounded and grounding.grounded_share == 1.0
    assert grounding.cited_ids() == ["c1"]


def test_a_fabricated_sentence_and_a_citation_not_retrieved_are_caught():
    claims = [
        CitedSentence("Methotrexate was associated with elevated transaminases.", ("c1",)),
        CitedSentence("Methotrexate caused fatal liver failure in 30% of children.", ("c1",)),
        CitedSentence("Two patients developed hepatic fibrosis.", ("c9",)),
        CitedSentence("Oral methotrexate was given weekly at 15 mg.", ()),
    ]
    grounding = check_grounding(claims, EVIDENCE, bag_of_words, BOUNDS)
    assert [s.problem for s in grounding.sentences] == [
        None,
        LOW_LEXICAL,
        UNKNOWN_CITATION,
        NO_CITATION,
    ]
    assert grounding.grounded_share == 0.25 and not grounding.fully_grounded
    assert grounding.problems == {LOW_LEXICAL: 1, UNKNOWN_CITATION: 1, NO_CITATION: 1}
    shown = render(grounding, lambda i: f"pmid:{i}")
    assert shown == "Methotrexate was associated with elevated transaminases. [pmid:c1]"
    marked = render(grounding, mode="mark")
    assert marked.count("[unsupported]") == 3 and "30%" in marked


def test_a_number_that_is_not_in_the_cited_text_lowers_lexical_support():
    assert lexical_support("Transaminases elevated in 12 of 40 patients.", EVIDENCE["c1"]) == 1.0
    assert lexical_support("Transaminases elevated in 19 of 40 patients.", EVIDENCE["c1"]) < 1.0


def test_words_from_the_wrong_passage_fail_the_embedding_bound():
    strict = GroundingBounds(min_lexical=0.0, min_embedding=0.9)
    claim = [CitedSentence("Oral methotrexate weekly dosing.", ("c1",))]
    assert check_grounding(claim, EVIDENCE, bag_of_words, strict).sentences[0].problem == (
        LOW_EMBEDDING
    )


def test_numbered_prompt_and_the_fixed_refusal_phrase():
    messages = numbered_messages("cite", "Which liver injuries?", ["first", "second"])
    assert "[1] first\n[2] second" in messages[1]["content"]
    assert says_nothing_found("not in   passages.") and not says_nothing_found("hepatitis [1]")


def test_a_generic_claim_appended_to_copied_identifiers_fails_the_run_bound():
    """Measured on Qwen 1.5B: identifiers lift the share of found words over 0.6."""
    identity = {
        "c1": "Doxorubicin (DrugBank DB00997, MeSH D059005). Also known as: adriamycin, "
        "caelyx. Molecular formula C33H37NO18."
    }
    claim = CitedSentence(
        "Doxorubicin (DrugBank DB00997, MeSH D059005) is associated with various adverse "
        "reactions.",
        ("c1",),
    )
    copied = CitedSentence("Doxorubicin (DrugBank DB00997, MeSH D059005).", ("c1",))
    assert lexical_support(claim.text, identity["c1"]) > BOUNDS.min_lexical  # share alone passes
    strict = GroundingBounds(BOUNDS.min_lexical, BOUNDS.min_embedding, max_unsupported_run=2)
    grounding = check_grounding([claim, copied], identity, bag_of_words, strict)
    assert [s.problem for s in grounding.sentences] == [LOW_LEXICAL, None]
    assert check_grounding([claim], identity, bag_of_words, BOUNDS).fully_grounded  # off: passes
