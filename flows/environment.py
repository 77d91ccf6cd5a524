"""The process environment every entrypoint (CLI, tests) sets before Prefect is imported.

Embedded Prefect with its state inside the repo, no telemetry, no network, models offline.
Values already set win (the Makefile exports the same ones), so a deployment can override
any of them. Imports nothing of Prefect: Prefect reads these at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prefect_defaults(*, quiet: bool = False) -> None:
    """Set the defaults unless set; ``quiet`` also drops Prefect's logs below WARNING (CLI)."""
    os.environ.setdefault("PREFECT_HOME", str(REPO / ".prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
