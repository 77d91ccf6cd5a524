import itertools

import polars as pl
import pytest

from tasks.core.passages import chunk_documents, chunk_sections, split_sections, split_sentences

STRUCTURED = (
    "BACKGROUND: Propranolol is a beta blocker. It slows the heart. "
    "METHODS: Forty patients received it, e.g. orally. Heart rate was recorded daily. "
    "RESULTS: Bradycardia occurred in three patients. One had heart failure. "
    "CONCLUSIONS: Monitor the heart rate."
)


def test_headings_split_sections_in_order():
    sections = split_sections(STRUCTURED)
    assert [name for name, _ in sections] == ["background", "methods", "results", "conclusions"]
    assert (
        sections[1][1] == "Forty patients received it, e.g. orally. Heart rate was recorded daily."
    )


def test_text_without_headings_is_one_section():
    assert split_sections("Plain text. Two sentences.") == [
        ("abstract", "Plain text. Two sentences.")
    ]


def test_sentences_do_not_break_on_abbreviations():
    assert split_sentences("Given e.g. orally. Then i.e. daily. Done.") == [
        "Given e.g. orally.",
        "Then i.e. daily.",
        "Done.",
    ]


def test_chunks_stay_within_a_section_and_overlap_by_one_sentence():
    sentences = [f"Sentence number {i} is here." for i in range(6)]
    chunks = chunk_sections(
        "42", [("results", " ".join(sentences)), ("conclusions", "Stop.")], max_chars=60, overlap=1
    )
    results = [c for c in chunks if c["section"] == "results"]
    assert all(len(str(c["text"])) < 60 for c in results)
    for first, second in itertools.pairwise(results):
        assert str(first["text"]).split(". ")[-1].rstrip(".") in str(second["text"])
    assert chunks[-1]["section"] == "conclusions" and chunks[-1]["text"] == "Stop."
    covered = " ".join(str(c["text"]) for c in results)
    assert all(s in covered for s in sentences)


def test_a_sentence_longer_than_the_bound_is_its_own_chunk_not_cut():
    long = "A" + "a" * 200 + "."
    chunks = chunk_sections("1", [("abstract", f"{long} Short one.")], max_chars=50, overlap=0)
    assert [c["text"] for c in chunks] == [long, "Short one."]


def test_chunk_ids_are_stable_and_follow_the_text():
    docs = pl.DataFrame({"source_id": ["1"], "text": [STRUCTURED], "products": [["propranolol"]]})
    first = chunk_documents(docs, max_chars=80, overlap=1)
    again = chunk_documents(docs, max_chars=80, overlap=1)
    assert first["chunk_id"].to_list() == again["chunk_id"].to_list()
    assert first["chunk_id"].n_unique() == first.height
    assert first["products"].to_list() == [["propranolol"]] * first.height
    edited = docs.with_columns(pl.col("text").str.replace("three", "four"))
    changed = chunk_documents(edited, max_chars=80, overlap=1)
    differs = set(changed["chunk_id"]) ^ set(first["chunk_id"])
    assert differs and len(set(changed["chunk_id"]) & set(first["chunk_id"])) == first.height - 1


def test_a_given_section_column_is_respected():
    docs = pl.DataFrame(
        {"source_id": ["ref:x/identity"], "section": ["identity"], "text": ["RESULTS: not a head."]}
    )
    assert chunk_documents(docs, max_chars=100, overlap=0)["section"].to_list() == ["identity"]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_chars"):
        chunk_sections("1", [("a", "x.")], max_chars=0, overlap=0)
