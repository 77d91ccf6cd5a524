"""The head-tail window: title, then sentences from both ends while they fit."""

from __future__ import annotations

import pytest

from tasks.core.text_window import head_tail_window

SENTENCES = ["Background one.", "Methods two.", "Results three.", "Middle four.", "Conclusion."]


def test_a_text_that_fits_is_kept_whole():
    assert head_tail_window("T", SENTENCES, [3, 3, 3, 3, 3], 15) == "T. " + " ".join(SENTENCES)


def test_first_and_last_sentences_are_taken_in_turn_and_kept_in_order():
    # budget 9 of 15: first (3), last (3), second (3); the third and fourth do not fit
    window = head_tail_window("T", SENTENCES, [3, 3, 3, 3, 3], 9)
    assert window == "T. Background one. Methods two. Conclusion."


def test_a_sentence_that_does_not_fit_stops_the_window_rather_than_skipping_ahead():
    # the last sentence is too long: only the first is taken, never a later short one
    window = head_tail_window("T", SENTENCES, [2, 1, 1, 1, 50], 10)
    assert window == "T. Background one."


def test_counts_must_match_sentences():
    with pytest.raises(ValueError, match="one token count per sentence"):
        head_tail_window("T", SENTENCES, [1], 10)
