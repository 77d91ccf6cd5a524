"""The grounded-answer rate per day, tier and model; refusals apart; the low-rate alert."""

from datetime import UTC, datetime

import polars as pl

from tasks.core.answer_quality import answer_row, grounded_rates, low_rate_days, product_tier

DAY1 = datetime(2026, 12, 1, 9, tzinfo=UTC)
DAY2 = datetime(2026, 12, 2, 9, tzinfo=UTC)


def row(n, served_by, composer, share, *, refusal=False, now=DAY1):
    return answer_row(
        event_id=f"e{n}",
        served_by=served_by,
        composer=composer,
        grounded_share=share,
        refusal=refusal,
        query_class="default",
        now=now,
    )


def test_tiers_of_the_metric():
    assert product_tier("warm", "model:local-qwen") == "cache"
    assert product_tier("miss", "model:local-qwen") == "composed"
    assert product_tier("miss", "extractive (fallback from model:local-qwen)") == "retrieval"
    assert product_tier("summary", "summary:signals") == "summary"


def test_rate_per_day_tier_and_model_with_refusals_apart():
    rows = pl.DataFrame(
        [
            row(1, "miss", "model:local-qwen", 1.0),
            row(2, "miss", "model:local-qwen", 0.5),
            row(3, "miss", "refusal", 1.0, refusal=True),
            row(4, "summary", "summary:signals", None),
            row(5, "hot", "extractive", None),  # cached before the check existed
            row(6, "miss", "extractive", 1.0, now=DAY2),
        ]
    )
    rates = grounded_rates(rows)
    by = {(r["day"], r["tier"], r["model"]): r for r in rates.iter_rows(named=True)}
    composed = by[("2026-12-01", "composed", "model:local-qwen")]
    assert (composed["answers"], composed["grounded"], composed["grounded_rate"]) == (2, 1, 0.5)
    refused = by[("2026-12-01", "retrieval", "refusal")]
    assert (refused["answers"], refused["refusals"], refused["grounded"]) == (1, 1, 0)
    assert by[("2026-12-01", "summary", "summary:signals")]["grounded_rate"] == 1.0
    assert by[("2026-12-01", "cache", "extractive")]["grounded_rate"] == 0.0
    low = low_rate_days(rates, 0.9)
    assert low.to_dicts() == [{"day": "2026-12-01", "answers": 4, "grounded": 2, "rate": 0.5}]
    assert low_rate_days(rates, 0.5).is_empty()
