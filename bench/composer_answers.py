"""Extractive vs model-composed answers over questions about the watched products.

Every question goes through `ask` (a miss: each question is new) on a copy of an index built
from the bundled corpus (`pharmalane scan` then `pharmalane index`, or any home with
``vectors/``); the composed run starts Qwen2.5-Coder-1.5B under llama.cpp on loopback (one
thread, top 4 chunks) and asks through the supervised path. Per answer: grounded share,
refusal, latency, cost; the file is rewritten after every question, so a run cut short still
reports what finished.

usage:
    python bench/composer_answers.py --home /path/with/index --mode extractive
    python bench/composer_answers.py --home /path/with/index --mode composed --threads 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models.llm.local import llama_server, qwen_gguf
from tasks.services.knowledge import Asker
from tasks.services.runtime import Runtime
from tasks.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"
REACTIONS = [
    "liver injury",
    "kidney failure",
    "seizures",
    "bradycardia",
    "skin rash",
    "neutropenia",
    "hypotension",
    "nausea",
    "hallucinations",
]
ISSUE_QUESTIONS = [
    "Which hepatic adverse reactions are reported with amiodarone?",
    "Which liver injuries are reported with methotrexate?",
]


def questions(products: list[str]) -> list[str]:
    """The issue's two questions, then per watched product one open and one reaction question,
    interleaved so a run cut short still covers every kind."""
    out = list(ISSUE_QUESTIONS)
    for n, product in enumerate(products):
        reaction = REACTIONS[n % len(REACTIONS)]
        out.append(f"Which adverse reactions are reported with {product}?")
        out.append(f"Is {reaction} reported with {product}?")
    return out


def settings_for(home: Path, mode: str, url: str | None) -> Settings:
    base = load_settings(home=home)
    knowledge = base.knowledge.model_copy(
        update={"composer": "model" if mode == "composed" else "extractive"}
    )
    if url is None:
        return base.model_copy(update={"knowledge": knowledge})
    endpoints = dict(base.llm.endpoints)
    endpoints["local-qwen"] = endpoints["local-qwen"].model_copy(
        update={"base_url": url, "timeout_s": 900.0, "max_retries": 0}
    )
    llm = base.llm.model_copy(update={"endpoints": endpoints})
    return base.model_copy(update={"knowledge": knowledge, "llm": llm})


@contextmanager
def server(
    mode: str, threads: int, cache: Path, gguf: Path | None, log: Path
) -> Iterator[str | None]:
    if mode != "composed":
        yield None
        return
    model = gguf or qwen_gguf(cache)
    with llama_server(model, threads=threads, n_ctx=2048, log=log) as url:
        yield url


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"answered": 0}
    composed = [r for r in rows if r["composer"].startswith("model:")]
    claims = [r for r in rows if not r["refusal"]]  # refusals are counted apart
    shares = [r["grounded_share"] for r in claims if r["grounded_share"] is not None]
    latency = sorted(r["latency_s"] for r in rows)
    return {
        "answered": len(rows),
        "by_model": len(composed),
        "fell_back": sum("fallback" in r["composer"] for r in rows),
        "refusals": sum(r["refusal"] for r in rows),
        # model-written answers that claim something and kept every sentence
        "model_answers_grounded": sum(
            not r["refusal"] and r["grounded_share"] == 1.0 for r in composed
        ),
        "answers_claiming": len(claims),
        "grounded_answer_rate": (
            round(sum(s >= 1.0 for s in shares) / len(claims), 4) if claims else None
        ),
        "mean_grounded_share": round(statistics.fmean(shares), 4) if shares else None,
        "latency_p50_s": round(statistics.median(latency), 3),
        "latency_max_s": round(latency[-1], 3),
        "mean_cost_usd": statistics.fmean(r["cost_usd"] for r in rows),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"composer-{args.mode}-")) / "home"
    # the chunk tables only: a semantic cache left in the source home would answer from it
    shutil.copytree(
        args.home / "vectors", home / "vectors", ignore=shutil.ignore_patterns("semantic_cache*")
    )
    if (args.home / "lake" / "summaries").is_dir():
        shutil.copytree(args.home / "lake" / "summaries", home / "lake" / "summaries")
    out = args.out or RESULTS / f"composer_{args.mode}.json"
    log = home.parent / "llama.log"
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"mode": args.mode, "threads": args.threads}
    with server(args.mode, args.threads, args.cache, args.gguf, log) as url:
        runtime = Runtime.for_settings(settings_for(home, args.mode, url))
        asker = Asker(runtime)
        asker.ask("warm-up: does aspirin cause nausea?")  # loads the embedder and dictionaries
        for question in questions(runtime.rules.watched)[: args.limit]:
            started = time.perf_counter()
            asked = asker.ask(question)
            answer = asked.answer
            rows.append(
                {
                    "question": question,
                    "tier": asked.tier,
                    "composer": answer.composer,
                    "grounded_share": answer.grounded_share,
                    "refusal": answer.refusal,
                    "note": answer.note,
                    "latency_s": round(time.perf_counter() - started, 3),
                    "cost_usd": asked.cost_usd,
                    "text": answer.text,
                    "problems": answer.grounding.get("problems", {}),
                }
            )
            report.update(summary=summarise(rows), answers=rows)
            out.write_text(json.dumps(report, indent=1, default=str))
        asker.flush()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="a home with vectors/ built")
    parser.add_argument("--mode", choices=["extractive", "composed"], default="extractive")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("data/cache"), help="GGUF join cache")
    parser.add_argument("--gguf", type=Path, default=None, help="an already joined GGUF file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
