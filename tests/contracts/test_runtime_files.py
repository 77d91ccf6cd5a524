"""Contracts: what the code writes under the default PHARMALANE_HOME never reaches git.

Case data (triage/), the dev data key (keys/), budgets and the audit trail live under ./data
on a laptop; one `git add .` must not publish them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tasks.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
HOME = Path("data")
# Sample data committed on purpose under data/ (none today); each one listed with its reason.
BUNDLED: frozenset[str] = frozenset({"data/README.md"})  # says what the folder is for


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )


def _runtime_paths() -> dict[str, Path]:
    """Every path property the settings define that lies under the default home."""
    settings = load_settings(home=HOME)
    found = {}
    for name, member in vars(Settings).items():
        if not isinstance(member, property):
            continue
        value = getattr(settings, name)
        if isinstance(value, Path) and value.is_relative_to(HOME) and value != HOME:
            found[name] = value
    return found


@pytest.fixture(scope="module", autouse=True)
def _in_a_git_checkout() -> None:
    if _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git checkout")


def test_the_settings_define_the_runtime_folders_this_contract_covers():
    names = set(_runtime_paths())
    assert {"triage_db", "audit_dir", "supervisor_dir", "reports_dir", "keys_dir"} <= names
    assert {"lake_dir", "vectors_dir", "cache_dir"} <= names


def test_every_runtime_path_under_the_default_home_is_git_ignored():
    probes = []
    for path in _runtime_paths().values():
        probes += [path, path / "probe.bin", path.with_name(path.name + "-wal")]
    probes += [HOME / "supervisor" / "budget.sqlite", HOME / "something-new" / "x.parquet"]
    result = _git("check-ignore", "--verbose", "--non-matching", *map(str, probes))
    not_ignored = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert not not_ignored, f"runtime paths git would add: {not_ignored}"


def test_no_runtime_file_under_data_is_tracked():
    tracked = set(_git("ls-files", "--", "data").stdout.split())
    assert tracked <= BUNDLED, f"tracked runtime files under data/: {sorted(tracked - BUNDLED)}"
