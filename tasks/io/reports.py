"""Reports on disk, written whole or not at all: text, JSON, and the cost/recall chart (PNG)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON (NaN as null), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(dict(data)), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def cost_recall_png(
    curve: Sequence[Mapping[str, float]],
    points: Mapping[str, tuple[float, float]],
    path: Path,
    *,
    title: str,
) -> Path:
    """The cascade's cost/recall curve with named reference points (cost per 1k, recall)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(
        [c["usd_per_1k"] for c in curve],
        [c["recall"] for c in curve],
        drawstyle="steps-post",
        label="cascade, low threshold swept",
    )
    for name, (cost, recall) in points.items():
        ax.scatter([cost], [recall], zorder=3)
        ax.annotate(name, (cost, recall), textcoords="offset points", xytext=(6, -10))
    ax.set_xlabel("USD per 1,000 in-scope items")
    ax.set_ylabel("recall on positives")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
