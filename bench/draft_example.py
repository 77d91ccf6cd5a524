"""One real periodic-summary draft with a real model server, timed and priced.

Drafts one product's "literature and signals" section for one month from a PHARMALANE_HOME
whose lake holds a scan (`pharmalane scan --all`; the summaries are materialised when
`pharmalane index` has not run), the
synthesis model asked through the supervisor like the flow does (tasks/services/drafting.py),
and writes the draft as docs/examples/periodic_summary_<product>.md with its time, tokens and
cost, and the figures to bench/results/draft_example_<product>.json.

usage (a llama.cpp server with Qwen2.5-Coder-1.5B on loopback, e.g. `pharmalane llm-serve qwen`):
    PHARMALANE_HOME=/path/home python bench/draft_example.py --url http://127.0.0.1:8085/v1 \
        --product propranolol --month 2026-11
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tasks.core.drafting import render_markdown
from tasks.services import drafting
from tasks.services.knowledge import SUMMARIES, faers_signal_columns, materialise_summaries
from tasks.services.runtime import Runtime
from tasks.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def settings_for(url: str) -> Settings:
    base = load_settings()
    endpoints = dict(base.llm.endpoints)
    endpoints["local-qwen"] = endpoints["local-qwen"].model_copy(
        update={"base_url": url, "timeout_s": 1800.0, "max_retries": 0}
    )
    return base.model_copy(update={"llm": base.llm.model_copy(update={"endpoints": endpoints})})


def run(url: str, product: str, month: str, threads: int) -> dict[str, Any]:
    runtime = Runtime.for_settings(settings_for(url))
    signals = pl.DataFrame(faers_signal_columns())
    if not runtime.lake.files(SUMMARIES):  # after a scan without `pharmalane index`
        materialise_summaries(runtime, signals, "draft-example", datetime.now(UTC))
    draft_run = drafting.DraftRun(run_id=f"example-{month}", now=datetime.now(UTC))
    started = time.monotonic()
    result = drafting.draft_period(runtime, month, [product], signals, draft_run)
    seconds = time.monotonic() - started
    (draft,) = draft_run.drafts
    row = next(r for r in draft_run.rows if r["draft_id"] == draft.draft_id)
    figures = {
        "product": product,
        "period": month,
        "draft_id": draft.draft_id,
        "composer": draft.composer,
        "model": draft.model,
        "threads": threads,
        "seconds_total": round(seconds, 1),
        "seconds_model_call": round(row["latency_s"], 1),
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cost_usd": row["cost_usd"],
        "evidence_items": len(draft.items),
        "sentences_written": len(draft.grounding.sentences),
        "sentences_kept": len(draft.grounding.kept),
        "grounded_share": draft.grounding.grounded_share,
        "problems": draft.grounding.problems,
        "inbox_items": result.inbox_items,
    }
    head = (
        f"<!-- made by bench/draft_example.py on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{draft.model or 'template'} via llama.cpp on CPU ({threads} thread), "
        f"{figures['seconds_model_call']} s for the model call "
        f"({row['input_tokens']} prompt + {row['output_tokens']} completion tokens), "
        f"${row['cost_usd']:.6f} at the local-qwen price of configs/models.yaml; "
        f"{figures['sentences_kept']} of {figures['sentences_written']} sentences kept by the "
        "grounding check -->\n\n"
    )
    example = REPO / "docs" / "examples" / f"periodic_summary_{product}.md"
    example.parent.mkdir(parents=True, exist_ok=True)
    example.write_text(head + render_markdown(draft), encoding="utf-8")
    out = REPO / "bench" / "results" / f"draft_example_{product}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="OpenAI-compatible base URL (.../v1)")
    parser.add_argument("--product", default="propranolol")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--threads", type=int, default=1, help="the server's threads (recorded)")
    args = parser.parse_args()
    figures = run(args.url, args.product, args.month, args.threads)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
