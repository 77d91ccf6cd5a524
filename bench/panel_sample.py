"""The persona panel on a small sample of the bundled replay feed, with a real model server.

CDISC pilot AE rows (structured seriousness flags held out: the narrative only, the flags kept
as labels) and Drugs.com consumer reviews go through the real triage lane; the cases it holds
go through the inbox fill with the panel on, every persona asked through the supervisor.
Writes panel agreement, validity, the actions taken, cost per item and latency per call.

usage (a llama.cpp server with Qwen2.5-Coder-1.5B on loopback, e.g. `pharmalane llm-serve qwen`):
    python bench/panel_sample.py --url http://127.0.0.1:8085/v1 --cdisc 4 --drugscom 4
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.pricing import call_cost
from tasks.intake import IcsrCase
from tasks.io.ae_feed import cdisc_cases, drugscom_cases
from tasks.services import inbox
from tasks.services.runtime import Runtime
from tasks.services.triage import Triager
from tasks.settings import PanelSettings, Settings, load_settings

OUT = Path(__file__).resolve().parent / "results" / "panel_sample.json"


def sample(cdisc: int, drugscom: int, seed: int) -> list[tuple[dict[str, Any], bool | None]]:
    """(report, serious label) pairs: CDISC half serious (the odd one too), half not, flags
    held out of the structured fields (the narrative only)."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible sample, not a secret)
    trial, _ = cdisc_cases()
    serious = [c for c in trial if any(c["outcome"].values())]
    mild = [c for c in trial if not any(c["outcome"].values())]
    picked = rng.sample(serious, (cdisc + 1) // 2) + rng.sample(mild, cdisc // 2)
    reports: list[tuple[dict[str, Any], bool | None]] = [
        ({**c, "outcome": {}}, any(c["outcome"].values())) for c in picked
    ]
    consumer = [c for c in drugscom_cases()[0] if len(c["narrative"]) < 700]
    reports += [(c, None) for c in rng.sample(consumer, drugscom)]
    return reports


def settings_for(home: Path, url: str) -> Settings:
    base = load_settings(home=home)
    endpoints = dict(base.llm.endpoints)
    endpoints["local-qwen"] = endpoints["local-qwen"].model_copy(
        update={"base_url": url, "timeout_s": 900.0, "max_retries": 0}
    )
    llm = base.llm.model_copy(update={"endpoints": endpoints})
    panel = PanelSettings(enabled=True, recall_file=home / "no-panel-recall.json")
    return base.model_copy(update={"llm": llm, "panel": panel})


def run(url: str, cdisc: int, drugscom: int, seed: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="panel-sample-"))
    runtime = Runtime.for_settings(settings_for(home, url))
    triager = Triager.build(runtime)
    labels: dict[str, bool | None] = {}
    for report, label in sample(cdisc, drugscom, seed):
        decision, _ = triager.triage(IcsrCase.model_validate(report), "bench")
        if decision.status == "held_for_review":
            labels[report["case_id"]] = label
    started = datetime.now(UTC)
    inbox.fill(runtime, started)
    items = [i for i in runtime.inbox.items(status=None) if i.source_id in labels]
    return summarise(runtime, items, labels)


def summarise(runtime: Runtime, items: list[Any], labels: dict[str, bool | None]) -> dict[str, Any]:
    hosted = runtime.rules.models.models["large-hosted"]
    rows, latencies, tokens = [], [], []
    for item in items:
        panel = item.evidence.get("panel") or {}
        notes = panel.get("notes") or []
        views = [n["verdict"]["seriousness"] if n["verdict"] else None for n in notes]
        rows.append(
            {
                "case_id": item.source_id,
                "label_serious": labels[item.source_id],
                "action": panel.get("action"),
                "reason_codes": panel.get("reason_codes"),
                "seriousness": views,
                "valid": [n["valid"] for n in notes],
                "cost_usd": panel.get("cost_usd"),
            }
        )
        latencies += [n["latency_s"] for n in notes if n["latency_s"]]
    ledger = runtime.lake.read("ledger")
    for row in ledger.iter_rows(named=True):
        if row["workflow"] == "persona-panel":
            tokens.append((row["input_tokens"], row["output_tokens"]))
    asked = [r for r in rows if r["valid"]]
    complete = [r for r in asked if all(r["valid"])]
    agree = [r for r in complete if len(set(r["seriousness"])) == 1]
    labelled = [r for r in complete if r["label_serious"] is not None]
    return {
        "items": len(rows),
        "items_asked": len(asked),
        "calls": len(tokens),
        "answers_valid_share": _share(sum(sum(r["valid"]) for r in asked), 3 * len(asked)),
        "items_complete": len(complete),
        "panel_agreement_share": _share(len(agree), len(complete)),
        "actions": {a: sum(r["action"] == a for r in rows) for a in {r["action"] for r in rows}},
        "serious_label_items": sum(r["label_serious"] is True for r in labelled),
        "serious_label_seen_serious_by_any_persona": sum(
            r["label_serious"] is True and "serious" in r["seriousness"] for r in labelled
        ),
        "cost_per_item_usd_local_qwen": _mean([r["cost_usd"] or 0.0 for r in asked]),
        "cost_per_item_usd_if_large_hosted": sum(
            call_cost(hosted, input_tokens=i, output_tokens=o) for i, o in tokens
        )
        / max(len(asked), 1),
        "tokens_per_call_mean": [_mean([t[0] for t in tokens]), _mean([t[1] for t in tokens])],
        "latency_s_per_call": {
            "p50": statistics.median(latencies) if latencies else None,
            "max": max(latencies) if latencies else None,
            "mean": _mean(latencies),
        },
        "per_item": rows,
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _mean(values: list[float] | list[int]) -> float | None:
    return round(statistics.fmean(values), 6) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--cdisc", type=int, default=4)
    parser.add_argument("--drugscom", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    result = run(args.url, args.cdisc, args.drugscom, args.seed)
    result["command"] = (
        f"python bench/panel_sample.py --url {args.url} --cdisc {args.cdisc} "
        f"--drugscom {args.drugscom} --seed {args.seed}"
    )
    OUT.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "per_item"}, indent=2))


if __name__ == "__main__":
    main()
