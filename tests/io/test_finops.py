"""FinOps over real Parquet and DuckDB in tmp_path: figures, bad rows, bursts and the charts."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from PIL import Image

from tasks.core.finops import assemble, savings_usd
from tasks.core.finops_render import chart_series, render_chart, render_charts, render_html
from tasks.core.pricing import CACHE_MODEL
from tasks.errors import DataContractError
from tasks.io.lake import Lake
from tasks.io.warehouse import Warehouse
from tasks.rules import load_models
from tasks.schemas import CACHE_EVENT, DECISION, LEDGER
from tasks.settings import load_settings

T0 = datetime(2026, 11, 16, 0, 5, tzinfo=UTC)
START, END = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)
# six quiet hours of scanning at $0.01, then one hour at $0.50 (a burst), then training
SPEND = [("nightly-literature-scan", "scan/small", h, 0.01) for h in range(6)] + [
    ("nightly-literature-scan", "scan/small", 6, 0.50),
    ("train-scorer", "train-scorer/small", 30, 0.20),
]


def _ledger(rows=SPEND, *, model="minilm-scorer", cost_override=None) -> pl.DataFrame:
    records = []
    for i, (workflow, pattern, hour, cost) in enumerate(rows):
        at = T0 + timedelta(hours=hour)
        records.append(
            {
                "call_id": f"call-{i:03d}",
                "workflow": workflow,
                "run_id": "run-1",
                "chunk_id": f"chunk-{i}",
                "item_id": None,
                "task": "ade-screen",
                "model": model,
                "backend": "local-cpu",
                "pattern": pattern,
                "n_items": 100,
                "input_tokens": int(cost / 0.00002 * 1000),
                "output_tokens": 0,
                "gpu_seconds": 0.0,
                "cost_usd": cost if cost_override is None or i != 2 else cost_override,
                "created_at": at,
                "day": at.date().isoformat(),
            }
        )
    return pl.DataFrame(records, schema_overrides={"cost_usd": pl.Float64})


def _decisions() -> pl.DataFrame:
    rows = (
        [("case_candidate", "small", 0.002)] * 4
        + [("escalated", "escalate", 0.001)] * 10
        + [("closed_negative", "small", 0.001)] * 20
        + [("closed_out_of_scope", "tool", 0.0)] * 100
    )
    return pl.DataFrame(
        {
            "item_id": [f"pmid-{i}" for i in range(len(rows))],
            "content_hash": [f"h{i}" for i in range(len(rows))],
            "workflow": ["nightly-literature-scan"] * len(rows),
            "pub_date": [T0.date()] * len(rows),
            "pub_month": ["2026-11"] * len(rows),
            "products": [["metformin"]] * len(rows),
            "route": ["warm"] * len(rows),
            "path": [r[1] for r in rows],
            "probability": [0.5] * len(rows),
            "decision": [r[0] for r in rows],
            "reason": ["r"] * len(rows),
            "model": ["minilm-scorer"] * len(rows),
            "cost_usd": [r[2] for r in rows],
            "run_id": ["run-1"] * len(rows),
            "chunk_id": ["chunk-0"] * len(rows),
            "decided_at": [T0] * len(rows),
        }
    )


@pytest.fixture
def settings(isolated_home):
    return load_settings()


def _report(settings, ledger: pl.DataFrame):
    lake = Lake(settings.lake_dir)
    lake.write("ledger", ledger, LEDGER, partition_by="day", stem="t")
    lake.write("decisions", _decisions(), DECISION, partition_by="pub_month", stem="t")
    figures = Warehouse(lake).figures(START, END)
    return assemble(
        figures, load_models(settings), start=START, end=END, burst_factor=3.0, baseline_hours=24
    )


def test_figures_from_the_ledger_and_decisions(settings):
    report = _report(settings, _ledger())
    assert report.total_usd == pytest.approx(0.06 + 0.50 + 0.20)
    assert report.calls == 8
    by_wf = dict(report.by_workflow.select("workflow", "cost_usd").rows())
    assert by_wf == {
        "nightly-literature-scan": pytest.approx(0.56),
        "train-scorer": pytest.approx(0.20),
    }
    per = {r["outcome"]: r for r in report.per_outcome.to_dicts()}
    assert per["case candidate found"]["items"] == 4
    assert per["case candidate found"]["usd_per_outcome"] == pytest.approx(0.56 / 4)
    assert per["case triaged to the large model"]["usd_per_outcome"] == pytest.approx(0.056)
    mix = dict(report.path_mix.select("path", "items").rows())
    assert mix == {"escalate": 10, "small": 24, "tool": 100}
    # decisions carry $0.038 of model work; the ledger paid $0.56 in this window: nothing saved
    assert report.cache_savings["saved_usd"].to_list() == [0.0]
    assert report.top_calls["call_id"].to_list()[:2] == ["call-006", "call-007"]
    assert report.top_calls.height == 8
    # hour 6: $0.50 against $0.01/h before it; the next day's training hour: $0.20 against the
    # trailing 24 h mean of $0.50 / 24
    bursts = report.bursts.select("hour", "ratio").rows()
    assert bursts == [
        (datetime(2026, 11, 16, 6), pytest.approx(50.0)),
        (datetime(2026, 11, 17, 6), pytest.approx(0.2 / (0.5 / 24))),
    ]


def test_window_excludes_calls_outside_it(settings):
    lake = Lake(settings.lake_dir)
    lake.write("ledger", _ledger(), LEDGER, partition_by="day", stem="t")
    figures = Warehouse(lake).figures(START, T0 + timedelta(hours=6))
    assert figures.by_workflow["calls"].to_list() == [6]


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        (-0.01, "negative"),
        (None, "missing"),
        (float("nan"), "not a finite"),
        (float("inf"), "not a finite"),
    ],
)
def test_bad_ledger_cost_names_the_call_and_field(settings, override, problem):
    ledger = _ledger().with_columns(
        pl.when(pl.col("call_id") == "call-002")
        .then(pl.lit(override, dtype=pl.Float64))
        .otherwise(pl.col("cost_usd"))
        .alias("cost_usd")
    )
    with pytest.raises(DataContractError, match=f"record call-002, field cost_usd: .*{problem}"):
        _report(settings, ledger)


def test_unknown_model_price_names_the_call_and_field(settings):
    ledger = _ledger(model="gpt-9-unpriced")
    with pytest.raises(DataContractError, match=r"record call-000, field model: .*gpt-9-unpriced"):
        _report(settings, ledger)


def _asked_twice(ledger: pl.DataFrame, *, hit_cost: float = 0.0) -> pl.DataFrame:
    """One question answered by retrieval ($0.001), then again from the warm cache."""
    asks = ledger.head(2).with_columns(
        pl.Series("call_id", ["call-ask-0", "call-ask-1"]),
        pl.lit("knowledge").alias("workflow"),
        pl.lit("q-1").alias("chunk_id"),
        pl.Series("pattern", ["ask/retrieve", "ask/cache-warm"]),
        pl.Series("model", ["minilm-extractive", CACHE_MODEL]),
        pl.Series("backend", ["local-cpu", "none"]),
        pl.Series("cost_usd", [0.001, hit_cost]),
    )
    return pl.concat([ledger, asks])


def _cache_events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": ["ask-0", "ask-1"],
            "key": ["q-1", "q-1"],
            "tier": ["miss", "warm"],
            "query_class": ["default", "default"],
            "cost_usd": [0.001, 0.0],
            "cost_saved_usd": [0.0, 0.001],
            "created_at": [T0, T0 + timedelta(hours=1)],
            "day": [T0.date().isoformat()] * 2,
        }
    )


def test_cache_hits_are_free_calls_and_their_savings_are_reported(settings):
    Lake(settings.lake_dir).write(
        "cache_events", _cache_events(), CACHE_EVENT, partition_by="day", stem="t"
    )
    report = _report(settings, _asked_twice(_ledger()))
    assert report.calls == 10
    assert report.total_usd == pytest.approx(0.761)
    knowledge = report.by_pattern.filter(pl.col("workflow") == "knowledge").sort("pattern")
    assert knowledge.select("pattern", "model", "calls", "cost_usd").rows() == [
        ("ask/cache-warm", CACHE_MODEL, 1, 0.0),
        ("ask/retrieve", "minilm-extractive", 1, pytest.approx(0.001)),
    ]
    saved = {r["workflow"]: r for r in report.cache_savings.to_dicts()}
    assert saved["knowledge"]["paid_usd"] == pytest.approx(0.001)
    assert saved["knowledge"]["saved_usd"] == pytest.approx(0.001)
    assert saved["nightly-literature-scan"]["saved_usd"] == 0.0


def test_a_cache_row_that_costs_money_names_the_call(settings):
    ledger = _asked_twice(_ledger(), hit_cost=0.001)
    with pytest.raises(DataContractError, match=r"record call-ask-1, field model: .*cache"):
        _report(settings, ledger)


def _ink(png: bytes) -> int:
    """Pixels that are not the white background."""
    image = Image.open(io.BytesIO(png)).convert("L")
    return sum(count for level, count in enumerate(image.histogram()) if level < 200)


def test_charts_plot_the_report_data_and_the_images_show_it(settings):
    report = _report(settings, _ledger())
    series = chart_series(report)
    assert series["cost_over_time"]["value"].sum() == pytest.approx(report.total_usd)
    assert series["top_prompts"].height == 8
    assert series["path_mix"]["value"].sum() == 134
    assert series["cost_per_outcome"].height == 3
    empty = {name: _ink(render_chart(name, frame.clear())) for name, frame in series.items()}
    for name, png in render_charts(report).items():
        assert png.startswith(b"\x89PNG"), name
        # bars, ticks and labels: far more ink than the same chart with no data
        assert _ink(png) > 2 * empty[name], name
    html = render_html(report, render_charts(report))
    assert html.count("data:image/png;base64,") == 4
    assert "2 burst hour(s)" in html
    assert "call-006" in html


def test_grounded_answer_rate_per_day_tier_and_model_and_its_alert(settings):
    from tasks.core.answer_quality import answer_row
    from tasks.schemas import ANSWER_GROUNDING
    from tasks.services import finops
    from tasks.services.runtime import Runtime

    lake = Lake(settings.lake_dir)
    lake.write("ledger", _ledger(), LEDGER, partition_by="day", stem="t")
    lake.write("decisions", _decisions(), DECISION, partition_by="pub_month", stem="t")
    answers = [
        ("miss", "model:local-qwen", 1.0, False),
        ("miss", "model:local-qwen", 0.5, False),  # a sentence was removed: not grounded
        ("miss", "refusal", 1.0, True),
        ("warm", "model:local-qwen", 1.0, False),
        ("summary", "summary:signals", None, False),
    ]
    rows = [
        answer_row(
            event_id=f"a{n}",
            served_by=tier,
            composer=composer,
            grounded_share=share,
            refusal=refused,
            query_class="default",
            now=T0,
        )
        for n, (tier, composer, share, refused) in enumerate(answers)
    ]
    frame = pl.DataFrame(rows, schema_overrides={"grounded_share": pl.Float64})
    lake.append_new(
        "answer_grounding", frame, ANSWER_GROUNDING, keys=["event_id"], partition_by="day", stem="t"
    )
    report = finops.report(Runtime.for_settings(settings), START, END)
    rates = {(r["tier"], r["model"]): r for r in report.grounding.iter_rows(named=True)}
    assert rates[("composed", "model:local-qwen")]["grounded_rate"] == 0.5
    assert rates[("cache", "model:local-qwen")]["grounded_rate"] == 1.0
    assert rates[("retrieval", "refusal")]["refusals"] == 1
    # 3 of the 4 answers that claim something are grounded: 0.75 < 0.9 (configs) -> alert
    assert report.grounding_alerts.to_dicts() == [
        {"day": "2026-11-16", "answers": 4, "grounded": 3, "rate": 0.75}
    ]
    html = render_html(report, {})
    assert "1 day(s) with a grounded-answer rate below the bound" in html
    assert "Grounded-answer rate per day, tier and model" in html


@pytest.mark.parametrize(
    ("attributed", "paid"),
    [([0.1, 0.2], [0.3]), ([0.3], [0.1, 0.2])],
    ids=["residue-above", "residue-below"],
)
def test_savings_of_sums_in_another_order_are_exactly_zero(settings, attributed, paid):
    """0.1 + 0.2 against 0.3 is $0 saved either way round: not a float residue of 5.6e-17,
    nor a -0.0 that the report would print as "-0"."""
    lake = Lake(settings.lake_dir)
    spend = [("nightly-literature-scan", "scan/small", 0, cost) for cost in paid]
    lake.write("ledger", _ledger(spend), LEDGER, partition_by="day", stem="t")
    decisions = _decisions().head(len(attributed)).with_columns(pl.Series("cost_usd", attributed))
    lake.write("decisions", decisions, DECISION, partition_by="pub_month", stem="t")
    report = assemble(
        Warehouse(lake).figures(START, END),
        load_models(settings),
        start=START,
        end=END,
        burst_factor=3.0,
        baseline_hours=24,
    )
    [(total, saved)] = report.cache_savings.select("attributed_usd", "saved_usd").rows()
    assert (total, saved, math.copysign(1.0, saved)) == (pytest.approx(0.3), 0.0, 1.0)


def test_savings_are_rounded_never_negative_and_never_minus_zero():
    """A residue either side of a sum is $0 (a -0.0 would print as "-0"); real figures stay."""
    worth = [0.00016282, 0.00016282, 0.3, 0.0015, 0.001]
    paid = [0.00016282 + 5.42101e-20, 0.00016282 - 5.42101e-20, 0.1 + 0.2, 0.0005, 0.002]
    saved = pl.select(savings_usd(pl.lit(pl.Series(worth)), pl.lit(pl.Series(paid))))
    values = saved.to_series().to_list()
    assert values == [0.0, 0.0, 0.0, pytest.approx(0.001), 0.0]
    assert [math.copysign(1.0, v) for v in values] == [1.0] * 5
