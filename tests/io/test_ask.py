"""`ask` through its tiers on real engines: LanceDB + Parquet in tmp_path, the packaged embedder,
the packaged drug and disease dictionaries. The clock is injected."""

import json
import shutil
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow.parquet as pq
import pytest

from tasks.core.cache_keys import checksum
from tasks.core.signals import disproportionality
from tasks.io import faers
from tasks.io.knowledge import ABSTRACT_CHUNKS, SEMANTIC_CACHE
from tasks.services.knowledge import Asker, embed_and_sync
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tasks.steps.knowledge import index_reference, materialise_summaries, publish_index_version

pytestmark = pytest.mark.slow
T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
QUESTION = "Does propranolol cause bradycardia?"


@pytest.fixture(scope="module")
def signals():
    return disproportionality(faers.read_counts(("betablocker500",)))


@pytest.fixture(scope="module")
def built(tmp_path_factory, signals):
    """Reference chunks (dictionary + FAERS) indexed once; each test gets its own copy."""
    home = tmp_path_factory.mktemp("knowledge") / "home"
    settings = load_settings(home=home)
    index_reference.fn(settings, signals)
    return home, publish_index_version.fn(settings, T0)


@pytest.fixture
def indexed(built, tmp_path, monkeypatch):
    source, version = built
    home = tmp_path / "home"
    shutil.copytree(source, home)
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__TOP_K", "3")  # fewer sentences to rank per miss
    return load_settings(home=home), version


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def test_miss_then_hot_then_expiry_rebuilds(indexed):
    settings, _ = indexed
    clock = Clock()
    asker = Asker(Runtime.for_settings(settings), clock=clock)
    first = asker.ask(QUESTION)
    assert first.tier == "miss" and first.cost_usd > 0
    assert any(c.startswith("ref:propranolol/") for c in first.answer.citations)

    clock.now = T0 + timedelta(hours=23)
    again = asker.ask("does propranolol cause BRADYCARDIA")
    assert again.tier == "hot" and again.cost_usd == 0
    assert again.cost_saved_usd == pytest.approx(first.cost_usd)
    assert again.answer == first.answer

    clock.now = T0 + timedelta(seconds=settings.knowledge.default_ttl_seconds)
    expired = asker.ask(QUESTION)
    assert expired.tier == "miss"


def test_a_new_process_is_served_from_the_warm_tier(indexed):
    settings, _ = indexed
    Asker(Runtime.for_settings(settings), clock=Clock()).ask(QUESTION)
    warm = Asker(Runtime.for_settings(settings), clock=Clock()).ask(QUESTION)
    assert warm.tier == "warm" and warm.cost_usd == 0


def test_paraphrase_is_a_semantic_hit_and_near_misses_never_are(indexed):
    settings, _ = indexed
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    asker.ask(QUESTION)
    assert asker.ask("Is bradycardia caused by propranolol?").tier == "semantic"
    for near_miss in (
        "Does metoprolol cause bradycardia?",  # different drug
        "Does propranolol cause hypotension?",  # different reaction
        "Does atenolol cause bradycardia?",
    ):
        assert asker.ask(near_miss).tier == "miss", near_miss


def test_product_filter_is_part_of_the_key_and_of_the_semantic_rule(indexed):
    settings, _ = indexed
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    asker.ask(QUESTION)
    filtered = asker.ask(QUESTION, product="propranolol")
    assert filtered.tier == "miss"
    assert all(c.startswith("ref:propranolol/") for c in filtered.answer.citations)


def test_reindexing_invalidates_every_tier(indexed, signals):
    settings, version = indexed
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    asker.ask(QUESTION)
    docs = pl.DataFrame(
        {
            "source_id": ["9001"],
            "text": ["Propranolol was stopped after symptomatic bradycardia in an 80-year-old."],
            "products": [["propranolol"]],
            "pub_date": [None],
        },
        schema_overrides={"pub_date": pl.Date},
    )
    embed_and_sync(Runtime.for_settings(settings), ABSTRACT_CHUNKS, docs)
    new_version = publish_index_version.fn(settings, T0)
    assert new_version != version
    assert not (settings.lake_dir / "knowledge_cache" / f"index_version={version}").exists()
    assert Runtime.for_settings(settings).knowledge.count(SEMANTIC_CACHE) == 0
    after = asker.ask(QUESTION)
    assert after.tier == "miss"
    assert Asker(Runtime.for_settings(settings), clock=Clock()).ask(
        "Is bradycardia caused by propranolol?"
    ).tier == ("semantic")


def test_a_corrupted_warm_entry_is_ignored_and_rebuilt(indexed):
    settings, version = indexed
    first = Asker(Runtime.for_settings(settings), clock=Clock()).ask(QUESTION)
    path = (
        settings.lake_dir / "knowledge_cache" / f"index_version={version}" / f"{first.key}.parquet"
    )
    table = pq.read_table(path)
    tampered = table.set_column(
        table.schema.get_field_index("payload"), "payload", [['{"text": "tampered"}']]
    )
    pq.write_table(tampered, path)

    fresh = Asker(Runtime.for_settings(settings), clock=Clock())
    rebuilt = fresh.ask(QUESTION)
    assert rebuilt.tier != "warm" and "tampered" not in rebuilt.answer.text
    assert Asker(Runtime.for_settings(settings), clock=Clock()).ask(QUESTION).tier == "warm"
    stored = pq.read_table(path).to_pylist()[0]
    assert stored["checksum"] == checksum(stored["payload"])


def test_a_corrupted_semantic_entry_is_never_served(indexed):
    settings, version = indexed
    store = Runtime.for_settings(settings).knowledge
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    first = asker.ask(QUESTION)
    vector = asker.embedder.embed([QUESTION])[0]
    row = store.cache_nearest(vector, k=1, index_version=version).row(0, named=True)
    tampered = json.dumps({**json.loads(first.answer.to_json()), "text": "TAMPERED"})
    assert tampered != row["payload"]
    store.cache_put(
        {**{k: v for k, v in row.items() if k != "similarity"}, "payload": tampered}, vector
    )

    paraphrase = Asker(Runtime.for_settings(settings), clock=Clock()).ask(
        "Is bradycardia caused by propranolol?"
    )
    assert paraphrase.tier == "miss" and "TAMPERED" not in paraphrase.answer.text
    rows = store.cache_nearest(vector, k=5, index_version=version)
    assert rows.height >= 1
    assert all(checksum(p) == c for p, c in zip(rows["payload"], rows["checksum"], strict=True))


def test_a_materialised_summary_answers_without_a_model_and_ledger_records_each_tier(
    indexed, signals
):
    settings, version = indexed
    materialise_summaries.fn(settings, signals, version, T0)
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    summary = asker.ask("Any disproportionality signals for propranolol?")
    assert summary.tier == "summary" and summary.cost_usd == 0
    assert summary.answer.citations == ["faers:betablocker500"]
    assert "Bradycardia" in summary.answer.text
    asker.ask(QUESTION)
    asker.ask(QUESTION)
    assert asker.flush() == 3
    ledger = pl.read_parquet(settings.lake_dir / "ledger" / "**" / "*.parquet")
    assert sorted(ledger["pattern"]) == ["ask/cache-hot", "ask/cache-summary", "ask/retrieve"]
    paid = ledger.filter(pl.col("pattern") == "ask/retrieve").row(0, named=True)
    assert paid["cost_usd"] > 0 and paid["model"] == "minilm-extractive"
    events = pl.read_parquet(settings.lake_dir / "cache_events" / "**" / "*.parquet")
    hot = events.filter(pl.col("tier") == "hot").row(0, named=True)
    assert hot["cost_saved_usd"] == pytest.approx(paid["cost_usd"])


def test_an_unknown_drug_gets_a_plain_refusal_and_answers_record_their_grounding(indexed):
    settings, _ = indexed
    asker = Asker(Runtime.for_settings(settings), clock=Clock())
    amiodarone = asker.ask("Which hepatic adverse reactions are reported with amiodarone?")
    assert amiodarone.answer.refusal and amiodarone.answer.citations == []
    assert amiodarone.answer.text == (
        "The corpus has nothing about amiodarone and hepatic reactions."
    )
    answered = asker.ask(QUESTION)
    assert not answered.answer.refusal and answered.answer.fully_grounded
    assert answered.answer.grounding["sentences"] >= 1
    assert all("propranolol" in c for c in answered.answer.citations)


def test_a_partly_grounded_model_answer_is_shown_booked_and_never_cached(
    indexed, tmp_path, monkeypatch
):
    import yaml

    from tests.openai_stub import OpenAIStub, Reply, scripted

    settings, _ = indexed
    config = tmp_path / "configs"
    shutil.copytree(settings.config_dir, config)
    reply = (
        "Propranolol with bradycardia shows a disproportionality signal in FAERS [1]. "
        "Propranolol causes bradycardia in 90% of children [1]."
    )
    with OpenAIStub(scripted(Reply(reply))) as stub:
        base = yaml.safe_load((config / "base.yaml").read_text())
        base["llm"]["endpoints"]["local-qwen"].update(base_url=stub.base_url, max_retries=0)
        (config / "base.yaml").write_text(yaml.safe_dump(base))
        monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER", "model")
        monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_SENTENCES", "0")  # chunks shown
        model_settings = load_settings(home=settings.home, config_dir=config)
        asker = Asker(Runtime.for_settings(model_settings), clock=Clock())
        first = asker.ask(QUESTION)
        again = asker.ask(QUESTION)
    assert first.answer.composer == "model:local-qwen" and first.answer.grounded_share == 0.5
    assert "90%" not in first.answer.text and first.answer.note
    assert again.tier == "miss"  # not admitted to the caches: asked again, replayed
    assert len(stub.requests) == 1  # the paid-call journal answered the second time
    asker.flush()
    ledger = pl.read_parquet(model_settings.lake_dir / "ledger" / "**" / "*.parquet")
    paid = ledger.filter(pl.col("pattern") == "ask/retrieve").row(0, named=True)
    assert (paid["model"], paid["task"], paid["output_tokens"]) == (
        "local-qwen",
        "knowledge-answer-llm",
        40,
    )
    rows = pl.read_parquet(model_settings.lake_dir / "answer_grounding" / "**" / "*.parquet")
    assert rows["tier"].to_list() == ["composed", "composed"]
    assert rows["fully_grounded"].to_list() == [False, False]


def test_a_model_answer_the_check_empties_gives_way_to_the_extractive_answer(
    indexed, tmp_path, monkeypatch
):
    """On-topic passages were retrieved, so "the corpus has nothing" would overstate it."""
    import yaml

    from tests.openai_stub import OpenAIStub, Reply, scripted

    settings, _ = indexed
    config = tmp_path / "configs"
    shutil.copytree(settings.config_dir, config)
    reply = "Propranolol causes bradycardia in 90% of children [1]. It is banned in Norway [7]."
    with OpenAIStub(scripted(Reply(reply))) as stub:
        base = yaml.safe_load((config / "base.yaml").read_text())
        base["llm"]["endpoints"]["local-qwen"].update(base_url=stub.base_url, max_retries=0)
        (config / "base.yaml").write_text(yaml.safe_dump(base))
        monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER", "model")
        monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_SENTENCES", "0")  # chunks shown
        model_settings = load_settings(home=settings.home, config_dir=config)
        asker = Asker(Runtime.for_settings(model_settings), clock=Clock())
        asked = asker.ask(QUESTION)
    answer = asked.answer
    assert len(stub.requests) == 1
    assert answer.composer == "extractive (fallback from model:local-qwen)"
    assert answer.note == (
        "the model's answer has no sentence the passages support (local-qwen): "
        "extractive answer instead"
    )
    assert not answer.refusal and answer.fully_grounded and "90%" not in answer.text
    assert answer.citations and all("propranolol" in c for c in answer.citations)
    asker.flush()
    ledger = pl.read_parquet(model_settings.lake_dir / "ledger" / "**" / "*.parquet")
    paid = ledger.filter(pl.col("pattern") == "ask/retrieve").row(0, named=True)
    assert (paid["model"], paid["output_tokens"]) == ("local-qwen", 40)  # the call is paid
