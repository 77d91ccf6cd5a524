"""The narrative model on the real packaged MiniLM: the whole narrative is read, nothing is
truncated, a narrative too long to read whole is refused rather than read in part."""

from __future__ import annotations

import pytest

from models.embedder import default_embedder
from models.narrative import NarrativeFlagger
from tasks.tools.text import normalise_text

FILLER = (
    "The patient attended the clinic for a routine visit. "
    "Vital signs were recorded and were within normal limits. "
    "The medication list was reviewed with the family. "
)


@pytest.fixture(scope="module")
def flagger():
    return NarrativeFlagger(default_embedder(), threshold=0.55, clear_below=0.40, max_windows=64)


def long_sentence(words: int, ending: str) -> str:
    body = " ".join(f"then the tablets were taken with water on day {i}" for i in range(words // 9))
    return f"The patient reported that {body} and finally {ending}."


def test_a_long_sentence_is_cut_into_windows_that_all_fit_and_cover_its_end(flagger):
    text = normalise_text(long_sentence(400, "she succumbed"))
    pieces = flagger.windows(text)
    assert len(pieces) > 1
    counts = flagger.embedder.count_tokens(pieces)
    assert max(counts) < flagger.embedder.max_tokens  # no window is truncated
    assert pieces[-1].endswith("she succumbed.")


def test_the_end_of_a_very_long_sentence_is_read_by_the_model(flagger):
    verdict = flagger.assess(normalise_text(long_sentence(400, "the patient died")))
    assert "death" in verdict.flags
    assert verdict.score is not None and verdict.score >= flagger.clear_below  # by meaning too


def test_a_sentence_after_thirty_filler_sentences_is_read(flagger):
    verdict = flagger.assess(normalise_text(FILLER * 10 + "Sadly she did not survive the night."))
    assert "death" in verdict.flags
    assert verdict.windows == 31


def test_a_narrative_needing_more_windows_than_allowed_is_not_read_at_all(flagger):
    verdict = flagger.assess(normalise_text(FILLER * 30))  # 90 sentences, 64 windows allowed
    assert (verdict.assessment, verdict.cleared, verdict.input_tokens) == ("too_long", (), 0)


def test_a_single_word_over_the_token_limit_is_too_long(flagger):
    verdict = flagger.assess("The patient wrote " + "1-" * 300 + " in the form.")
    assert verdict.assessment == "too_long"


def test_a_plain_mild_narrative_clears_every_criterion(flagger):
    text = "Mild headache after the first dose, resolved the next day without treatment."
    verdict = flagger.assess(normalise_text(text))
    assert verdict.assessment == "clear"
    assert set(verdict.cleared) == set(flagger.criteria)
    assert verdict.input_tokens > 0


def test_clear_below_may_not_exceed_the_flag_threshold():
    with pytest.raises(ValueError, match="clear_below"):
        NarrativeFlagger(default_embedder(), threshold=0.5, clear_below=0.6)
