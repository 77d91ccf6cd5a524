"""The roots flow path parameters are confined to, and the checks flows run first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.io.medline import bundled_medline_files
from tasks.policy.paths import confine
from tasks.settings import REPO_ROOT, Settings


def input_roots(settings: Settings) -> list[Path]:
    """``paths.allowed_input_roots``, or PHARMALANE_HOME, the repo's data/ and bundled MEDLINE."""
    if settings.paths.allowed_input_roots is not None:
        return list(settings.paths.allowed_input_roots)
    bundled = sorted({p.parent for p in bundled_medline_files()})
    return [settings.home, REPO_ROOT / "data", *bundled]


def output_roots(settings: Settings) -> list[Path]:
    """``paths.allowed_output_roots``, or PHARMALANE_HOME and bench/results."""
    if settings.paths.allowed_output_roots is not None:
        return list(settings.paths.allowed_output_roots)
    return [settings.home, REPO_ROOT / "bench" / "results"]


def confined_sources(
    settings: Settings, sources: Sequence[str] | None, parameter: str = "sources"
) -> list[str] | None:
    """``sources`` resolved inside the input roots (None stays None: the bundled files)."""
    if sources is None:
        return None
    return [str(p) for p in confine(parameter, sources, input_roots(settings))]


def confined_output(settings: Settings, folder: str | Path, parameter: str) -> Path:
    """``folder`` resolved inside the output roots."""
    return confine(parameter, [folder], output_roots(settings))[0]
