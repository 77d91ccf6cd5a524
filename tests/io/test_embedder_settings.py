"""The screening embedder's token limit and text window, on the real packaged model and LanceDB."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from models.embedder import default_embedder, packaged_embedder
from tasks.services.embedding import (
    Batch,
    embed_paying_once,
    screen_key,
    screen_texts,
    screen_texts_and_tokens,
)
from tasks.services.runtime import Runtime
from tasks.settings import load_settings

LONG = " ".join(
    f"Sentence {i} reports that patient {i} received cisplatin and developed nephrotoxicity."
    for i in range(30)
)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ["short", "long"],
            "content_hash": ["h-short", "h-long"],
            "title": ["Cisplatin and the kidney", "Thirty patients on cisplatin"],
            "abstract": ["Nephrotoxicity after cisplatin.", LONG],
            "pub_date": [NOW.date(), NOW.date()],
            "products": [["cisplatin"], ["cisplatin"]],
        }
    )


def test_the_model_s_own_limit_is_the_default_model_and_another_limit_is_named():
    assert packaged_embedder(256) is default_embedder()
    short = packaged_embedder(128)
    assert short.name == "all-MiniLM-L6-v2@128tok" and short.max_tokens == 128
    assert short.count_tokens([LONG]) == [128]
    assert default_embedder().count_tokens([LONG]) == [256]


def test_head_tail_keeps_a_short_text_and_fits_a_long_one_with_its_last_sentence(isolated_home):
    runtime = Runtime.for_settings(
        load_settings(scan={"embed_max_tokens": 128, "embed_window": "head-tail"})
    )
    short, long = screen_texts(runtime, _frame())
    assert short == "Cisplatin and the kidney. Nephrotoxicity after cisplatin."
    assert long.startswith("Thirty patients on cisplatin. Sentence 0 reports")
    assert long.endswith(
        "Sentence 29 reports that patient 29 received cisplatin and developed nephrotoxicity."
    )
    assert runtime.screen_embedder.count_tokens([long]) < [128]


def test_the_tokens_billed_are_the_tokens_of_the_text_read_under_either_window(isolated_home):
    long_text_tokens = []
    for scan in ({}, {"embed_max_tokens": 128, "embed_window": "head-tail"}):
        runtime = Runtime.for_settings(load_settings(scan=scan))
        texts, tokens = screen_texts_and_tokens(runtime, _frame())
        assert texts == screen_texts(runtime, _frame())
        assert tokens == runtime.screen_embedder.count_tokens(texts)
        long_text_tokens.append(tokens[1])
    assert long_text_tokens[0] == 256 and long_text_tokens[1] < 128  # truncated; windowed


def test_a_changed_setting_embeds_again_and_never_reuses_another_setting_s_vectors(
    isolated_home,
):
    batch = Batch("train-scorer", "run-1", "chunk-1", NOW, pattern="train-scorer/small")
    today = Runtime.for_settings(load_settings())
    window = Runtime.for_settings(
        load_settings(scan={"embed_max_tokens": 128, "embed_window": "head-tail"})
    )
    assert (screen_key(today), screen_key(window)) == (
        "all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2@128tok+head-tail",
    )
    first = embed_paying_once(today, _frame(), batch)
    assert embed_paying_once(today, _frame(), batch).embedded == 0  # paid once per setting
    other = embed_paying_once(window, _frame(), batch)
    assert (first.embedded, other.embedded) == (2, 2)
    assert embed_paying_once(window, _frame(), batch).embedded == 0
    # a text within 128 tokens gives the same vector; the long one is read differently
    assert np.allclose(first.vectors["short"], other.vectors["short"], atol=1e-5)
    assert float(first.vectors["long"] @ other.vectors["long"]) < 0.999
