"""The Prefect test harness, once per session (it costs ~13 s to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(autouse=True, scope="session")
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _flow_paths_in_tmp(tmp_path_allowed: Path) -> None:
    """Flow tests write their MEDLINE files and results in tmp_path: an allowed root here."""
