"""The drafting lane end to end on the Prefect harness: real lake, inbox, journal, budgets, audit
trail and embedder in tmp_path, the synthesis model scripted on loopback (tests/openai_stub.py).

draft -> grounding check (a fabricated claim and a citation to no evidence are removed) ->
Parquet + Markdown + inbox item -> a reviewer accepts -> FinOps prices the accepted summary; a
re-run stores and pays nothing twice; a backend that is down gives cited template drafts.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.draft_periodic_summary import draft_periodic_summary
from models.llm.local import free_port
from tasks.errors import DataContractError
from tasks.io.lake import Lake
from tasks.schemas import PRODUCT_SUMMARY, InboxItem
from tasks.services import finops, inbox
from tasks.services.drafting import DRAFTS
from tasks.services.knowledge import SUMMARIES
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.openai_stub import OpenAIStub, Reply

REPO = Path(__file__).resolve().parents[2]
PRODUCT = "propranolol"
FABRICATED = "Propranolol cured androgenetic alopecia in 90% of treated adolescents"
LITERATURE = (
    "Latest ADE literature about propranolol: pmid 111 (2026-11-03, case_candidate, p=0.91): "
    "Propranolol-associated hypoglycaemia in an infant treated for haemangioma."
)


@pytest.fixture
def drafting_home(isolated_home, tmp_path, monkeypatch):
    """Configs copied to tmp_path; the caller points local-qwen at a server."""
    config = tmp_path / "configs"
    shutil.copytree(REPO / "configs", config)
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(config))
    return config


def serve(config: Path, url: str) -> None:
    base = yaml.safe_load((config / "base.yaml").read_text())
    base["llm"]["endpoints"]["local-qwen"].update(base_url=url, timeout_s=5.0, max_retries=0)
    (config / "base.yaml").write_text(yaml.safe_dump(base))


def runtime() -> Runtime:
    return Runtime.for_settings(load_settings())


def seed(now: datetime) -> None:
    """The refresh's literature summary and a literature case a reviewer confirmed now."""
    lake = Lake(load_settings().lake_dir)
    row = {
        "product": PRODUCT,
        "kind": "literature",
        "text": LITERATURE,
        "sources": ["pmid:111"],
        "source_count": 1,
        "freshest_source": "2026-11-03",
        "index_version": "v1",
        "refreshed_at": now,
    }
    lake.write(SUMMARIES, pl.DataFrame([row]), PRODUCT_SUMMARY, partition_by="kind", stem="s")
    case = {"suspect_drugs": [PRODUCT], "reactions": ["hypoglycaemia"]}
    case |= {"seriousness": ["hospitalisation"], "summary": "Infant hypoglycaemia."}
    item = InboxItem(
        item_id="literature:111",
        kind="literature",
        source_id="111",
        source="escalation-lane",
        reason="case_candidate",
        day_zero=now.date(),
        clock_days=15,
        due_date=now.date() + timedelta(days=15),
        priority=2,
        evidence={"products": [PRODUCT], "case": case, "reference": {"item_id": "111"}},
    )
    run = runtime()
    run.inbox.add([item], now=now)
    inbox.resolve(run, "literature:111", verdict="accept", reviewer="dr-x", reason="valid", at=now)


def passages(request: dict) -> dict[str, str]:
    user = request["messages"][-1]["content"]
    return dict(re.findall(r"^\[(\d+)\] (.+)$", user, flags=re.M))


def writer(request: dict) -> Reply:
    """A draft restating the first FAERS passage and the case, plus a fabricated claim and a
    sentence citing a passage that was never given."""
    shown = passages(request)
    faers = next(n for n, text in shown.items() if text.startswith("In the FAERS extract"))
    case = next(n for n, text in shown.items() if text.startswith("A reviewer confirmed"))
    first_case_sentence = shown[case].split(": suspect")[0]
    text = (
        f"{shown[faers].split(';')[0]}. [{faers}] {first_case_sentence}. [{case}] "
        f"{FABRICATED}. [1] Propranolol is safe in pregnancy. [{len(shown) + 5}]"
    )
    return Reply(text, usage={"prompt_tokens": 900, "completion_tokens": 120})


def test_draft_to_inbox_to_accepted_prices_the_accepted_summary(drafting_home):
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    seed(now)
    with OpenAIStub(writer) as stub:
        serve(drafting_home, stub.base_url)
        done = draft_periodic_summary(month=month, products=[PRODUCT])
        assert len(stub.requests) == 1
        assert (done.drafts, done.new_drafts, done.templates) == (1, 1, 0)
        assert done.removed_sentences == 2  # the fabricated claim and the unknown citation
        again = draft_periodic_summary(month=month, products=[PRODUCT])
        assert len(stub.requests) == 1  # replayed from the paid-call journal
    assert (again.new_drafts, again.cost_usd, again.inbox_items) == (0, 0.0, done.inbox_items)

    settings = load_settings()
    stored = Lake(settings.lake_dir).read(DRAFTS)
    assert stored.height == 1
    row = stored.row(0, named=True)
    assert (row["product"], row["period"], row["composer"], row["model"]) == (
        PRODUCT,
        month,
        "model",
        "local-qwen",
    )
    assert (row["sentences"], row["removed_sentences"], row["grounded_share"]) == (2, 2, 0.5)
    price = runtime().rules.models.models["local-qwen"]
    cost = 0.9 * price.usd_per_1k_input_tokens + 0.12 * price.usd_per_1k_output_tokens
    assert row["cost_usd"] == pytest.approx(cost) and done.cost_usd == pytest.approx(cost)

    (path,) = [Path(p) for p in done.markdown]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.is_relative_to(settings.home)
    markdown = path.read_text()
    section = markdown.split("## Literature and signals")[1].split("## Removed")[0]
    assert "Bradycardia" in section or "FAERS extract" in section
    assert "PMID:111" in section
    assert FABRICATED not in section and "pregnancy" not in section
    assert f"~~{FABRICATED}.~~" in markdown or f"~~{FABRICATED}~~" in markdown
    assert all(
        re.search(r"\[\d+(, \d+)*\]$", s.strip()) for s in re.split(r"(?<=\])\s", section.strip())
    )

    (item_id,) = done.inbox_items
    item = inbox.find(runtime(), item_id)
    assert (item.kind, item.status, item.source) == ("draft", "open", "draft-periodic-summary")
    assert item.evidence["markdown"] == markdown
    with pytest.raises(DataContractError, match="not changes"):
        inbox.resolve(
            runtime(), "literature:111", verdict="changes", reviewer="x", reason="abc", at=now
        )
    accepted = inbox.resolve(
        runtime(), item_id, verdict="accept", reviewer="dr-x", reason="fit for PSUR", at=now
    )
    assert accepted.outcome == "accepted"
    trail = [json.loads(line)["entry"] for line in (settings.audit_dir / "trail.jsonl").open()]
    kinds = {(e["kind"], e.get("item_id") or ",".join(e.get("item_ids", []))) for e in trail}
    assert ("draft_submitted", item_id) in kinds and ("human_resolution", item_id) in kinds

    report = finops.report(runtime(), now - timedelta(hours=1), now + timedelta(hours=1))
    priced = report.drafting.row(0, named=True)
    assert (priced["drafts"], priced["accepted"], priced["open"]) == (1, 1, 0)
    assert priced["usd_per_accepted_summary"] == pytest.approx(cost)
    outcomes = dict(zip(*report.resolved_outcomes.select("outcome", "model_usd"), strict=True))
    assert outcomes["draft_accepted"] == pytest.approx(cost)


def test_a_backfill_with_the_backend_down_makes_cited_template_drafts(drafting_home):
    serve(drafting_home, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    done = draft_periodic_summary(start_month="2026-09", end_month="2026-10", products=[PRODUCT])
    assert (done.periods, done.drafts, done.templates) == (["2026-09", "2026-10"], 2, 2)
    assert done.cost_usd == 0.0
    for path in done.markdown:
        markdown = Path(path).read_text()
        assert "Template draft: the synthesis model did not write this draft" in markdown
        assert "DRAFT_MODEL_UNAVAILABLE" in markdown
        assert "grounded share 100%" in markdown
    drafts = Lake(load_settings().lake_dir).read(DRAFTS)
    assert sorted(drafts["period"].to_list()) == ["2026-09", "2026-10"]
    assert set(drafts["composer"]) == {"template"} and set(drafts["removed_sentences"]) == {0}
    items = [i for i in runtime().inbox.items() if i.kind == "draft"]
    assert len(items) == 2 and all(i.evidence["composer"] == "template" for i in items)
    assert {i.due_date for i in items} == {date.today() + timedelta(days=30)}
    changed = inbox.resolve(
        runtime(),
        items[0].item_id,
        verdict="changes",
        reviewer="dr-x",
        reason="redo",
        at=datetime.now(UTC),
    )
    assert changed.outcome == "needs_changes"


def test_unwatched_products_and_mixed_periods_are_refused(drafting_home):
    with pytest.raises(ValueError, match="not both"):
        draft_periodic_summary(month="2026-10", start_month="2026-09", end_month="2026-10")
    with pytest.raises(DataContractError, match="not watched"):
        draft_periodic_summary(month="2026-10", products=["amiodarone"])


def test_a_draft_with_no_supported_sentence_becomes_a_template_that_shows_what_was_removed(
    drafting_home,
):
    def unsupported(request: dict) -> Reply:
        return Reply(f"{FABRICATED}. [1] Propranolol is safe in pregnancy.")

    with OpenAIStub(unsupported) as stub:
        serve(drafting_home, stub.base_url)
        done = draft_periodic_summary(month="2026-10", products=[PRODUCT])
    assert (done.drafts, done.templates, done.removed_sentences) == (1, 1, 2)
    markdown = Path(done.markdown[0]).read_text()
    assert "DRAFT_NOTHING_SUPPORTED" in markdown and "grounded share 100%" in markdown
    section = markdown.split("## Literature and signals")[1].split("## Removed")[0]
    assert FABRICATED not in section and "pregnancy" not in section
    assert f"~~{FABRICATED}.~~ (cited: 1; LOW_LEXICAL_SUPPORT)" in markdown
    assert "~~Propranolol is safe in pregnancy.~~ (cited: nothing; NO_CITATION)" in markdown
    assert done.cost_usd > 0  # the refused answer was paid for, and is booked
