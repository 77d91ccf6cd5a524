"""The model composer through the supervised path: the model scripted on loopback
(tests/openai_stub.py), the real paid-call journal, budget store and packaged MiniLM in tmp_path.
A fabricated sentence and a citation to a chunk that was not retrieved are caught; a backend
that is down falls back to the extractive answer and says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from models.llm.local import free_port
from tasks.core.grounding import GroundingBounds
from tasks.core.knowledge import ExtractiveComposer, citation
from tasks.services.composer import model_composer
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.openai_stub import OpenAIStub, Reply, scripted

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Which liver injuries are reported with methotrexate?"
PASSAGES = pl.DataFrame(
    {
        "chunk_id": ["chunk-a", "chunk-b", "chunk-c"],
        "source_id": ["111", "222", "ref:methotrexate/identity"],
        "section": ["results", "abstract", "identity"],
        "text": [
            "Methotrexate was associated with elevated transaminases in 12 of 40 patients. "
            "Two patients developed hepatic fibrosis on biopsy.",
            "Oral methotrexate was given weekly at 15 mg for rheumatoid arthritis.",
            "Methotrexate (DrugBank DB00563, MeSH D019384). Also known as: amethopterin.",
        ],
        "similarity": [0.71, 0.55, 0.40],
    }
)


@pytest.fixture
def configs(isolated_home, tmp_path, monkeypatch):
    config = tmp_path / "configs"
    shutil.copytree(REPO / "configs", config)
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(config))
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER", "model")
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_SENTENCES", "0")  # whole chunks shown
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_CHUNK_CHARS", "450")
    return config


def serve(config: Path, url: str) -> None:
    base = yaml.safe_load((config / "base.yaml").read_text())
    base["llm"]["endpoints"]["local-qwen"].update(base_url=url, timeout_s=5, max_retries=0)
    (config / "base.yaml").write_text(yaml.safe_dump(base))


def composer_for(runtime: Runtime):
    extractive = ExtractiveComposer(runtime.embedder, 2, GroundingBounds())
    return model_composer(runtime, extractive)


def compose(runtime: Runtime):
    vector = np.asarray(runtime.embedder.embed([QUESTION])[0], dtype=np.float32)
    return composer_for(runtime).compose(QUESTION, vector, PASSAGES)


def test_grounded_sentences_stay_and_a_fabricated_one_is_removed(configs):
    reply = (
        "Methotrexate was associated with elevated transaminases in 12 of 40 patients [1]. "
        "Two patients developed hepatic fibrosis [1]. "
        "Methotrexate caused fulminant hepatic failure requiring transplant in 30% of users [1]."
    )
    with OpenAIStub(scripted(Reply(reply))) as stub:
        serve(configs, stub.base_url)
        runtime = Runtime.for_settings(load_settings())
        composed = compose(runtime)
        again = compose(runtime)  # the same question is replayed from the paid-call journal
    answer = composed.answer
    assert answer.composer == "model:local-qwen" and composed.model_key == "local-qwen"
    assert answer.grounded_share == pytest.approx(2 / 3) and not answer.fully_grounded
    assert "30%" not in answer.text and "fibrosis" in answer.text
    assert answer.citations == ["pmid:111 §results"]
    assert answer.grounding["problems"] == {"LOW_LEXICAL_SUPPORT": 1}
    assert answer.note == "1 unsupported sentence(s) removed"
    assert (composed.input_tokens, composed.output_tokens) == (120, 40)  # the stub's usage
    assert len(stub.requests) == 1 and again.answer == answer
    prompt = stub.requests[0]["messages"][1]["content"]
    assert "[1] Methotrexate was associated" in prompt and "[3] Methotrexate (DrugBank" in prompt


def test_a_citation_to_a_chunk_that_was_not_retrieved_is_caught(configs, monkeypatch):
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_TOP_CHUNKS", "2")  # chunk 3 is not shown
    reply = (
        "Oral methotrexate was given weekly at 15 mg [2]. "
        "Methotrexate is also known as amethopterin [3]."
    )
    with OpenAIStub(scripted(Reply(reply))) as stub:
        serve(configs, stub.base_url)
        composed = compose(Runtime.for_settings(load_settings()))
    answer = composed.answer
    assert answer.grounding["problems"] == {"UNKNOWN_CITATION": 1}
    assert answer.grounded_share == 0.5
    assert "amethopterin" not in answer.text and answer.citations == ["pmid:222 §abstract"]
    assert "\n[3] " not in stub.requests[0]["messages"][1]["content"]  # chunk 3 not shown


def test_a_backend_that_is_down_falls_back_to_the_extractive_answer_and_says_so(configs):
    serve(configs, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    runtime = Runtime.for_settings(load_settings())
    composed = compose(runtime)
    answer = composed.answer
    assert answer.composer == "extractive (fallback from model:local-qwen)"
    assert answer.note.startswith("the model backend is unavailable (local-qwen)")
    assert answer.fully_grounded and composed.model_key is None
    assert "[pmid:111 §results]" in answer.text


def test_a_model_that_says_the_passages_do_not_answer_is_a_plain_answer(configs):
    with OpenAIStub(scripted(Reply("NOT IN PASSAGES"))) as stub:
        serve(configs, stub.base_url)
        answer = compose(Runtime.for_settings(load_settings())).answer
    assert answer.refusal and answer.citations == [] and answer.fully_grounded
    assert answer.text == "The retrieved passages do not answer this question."


def test_sentence_evidence_shows_the_nearest_sentences_and_cites_their_chunks(configs, monkeypatch):
    monkeypatch.setenv("PHARMALANE_KNOWLEDGE__COMPOSER_SENTENCES", "2")

    def copy_the_first_item(body: dict) -> Reply:  # a model that copies, leading marker
        shown = body["messages"][1]["content"].split("\n")
        first = next(line for line in shown if line.startswith("[1] "))
        return Reply(f"{first}\n[9] Methotrexate is safe for the liver.")

    with OpenAIStub(copy_the_first_item) as stub:
        serve(configs, stub.base_url)
        answer = compose(Runtime.for_settings(load_settings())).answer
    prompt = stub.requests[0]["messages"][1]["content"]
    items = [line[4:] for line in prompt.split("\n") if line[:1] == "[" and line[2:4] == "] "]
    sentences = [s for text in PASSAGES["text"] for s in text.split(". ")]
    assert len(items) == 2 and all(
        i.rstrip(".") in [s.rstrip(".") for s in sentences] for i in items
    )
    assert answer.grounding["problems"] == {"UNKNOWN_CITATION": 1}  # [9] was never shown
    assert answer.text.startswith(items[0]) and "safe" not in answer.text
    source = PASSAGES.filter(PASSAGES["text"].str.contains(items[0][:30], literal=True))
    row = source.row(0, named=True)
    assert answer.citations == [citation(row["source_id"], row["section"])]
