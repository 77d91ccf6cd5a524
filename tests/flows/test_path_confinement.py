"""Flow path parameters cannot make a worker read or write outside the configured roots.

Whoever can start a deployment run chooses its parameters; these runs reproduce the attack
(a source of /etc/passwd, an output folder of /tmp/../etc) and must fail at the very start.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flows.backfill import BackfillParams, backfill
from flows.evaluate_scan import evaluate_scan
from flows.ladder_eval import ladder_eval
from flows.nightly_literature_scan import nightly_literature_scan
from flows.refresh_summaries import refresh_summaries
from tasks.errors import DataContractError
from tasks.io.medline import bundled_medline_files
from tasks.services.paths import confined_output, confined_sources
from tasks.settings import REPO_ROOT, load_settings


def refused(state, field: str) -> str:
    assert state.is_failed(), state
    with pytest.raises(DataContractError) as caught:
        state.result()
    assert caught.value.field == field
    return str(caught.value)


def test_scan_refuses_etc_passwd_as_a_source_before_reading_anything(isolated_home):
    state = nightly_literature_scan(sources=["/etc/passwd"], return_state=True)
    assert "/etc/passwd" in refused(state, "sources")
    assert not isolated_home.exists()  # no cache, lake or quarantine written


def test_scan_refuses_a_symlink_in_home_that_points_out(isolated_home):
    isolated_home.mkdir()
    (isolated_home / "feed.xml").symlink_to("/etc/passwd")
    state = nightly_literature_scan(sources=[str(isolated_home / "feed.xml")], return_state=True)
    refused(state, "sources")


def test_backfill_and_refresh_refuse_the_same_source(isolated_home):
    params = BackfillParams(since=date(2020, 1, 1), until=date(2020, 1, 3), sources=["/etc/passwd"])
    refused(backfill(**params.model_dump(), return_state=True), "sources")
    refused(refresh_summaries(sources=["/etc/passwd"], return_state=True), "sources")


def test_output_folders_outside_the_roots_are_refused(isolated_home):
    ladder = ladder_eval(out_dir="/tmp/../etc", sample=0, return_state=True)
    assert "/etc" in refused(ladder, "out_dir")
    evaluated = evaluate_scan(results_dir="/tmp/../etc", return_state=True)
    refused(evaluated, "results_dir")


def test_default_roots_allow_home_the_repo_data_and_the_bundled_medline(isolated_home, monkeypatch):
    monkeypatch.delenv("PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS")
    monkeypatch.delenv("PHARMALANE_PATHS__ALLOWED_OUTPUT_ROOTS")
    settings = load_settings()
    bundled = str(bundled_medline_files()[0])
    wanted = [str(isolated_home / "feed.xml"), str(REPO_ROOT / "data" / "feed.xml"), bundled]
    assert confined_sources(settings, wanted) == [str(Path(p).resolve()) for p in wanted]
    assert confined_output(settings, REPO_ROOT / "bench" / "results", "out_dir").is_dir()
    with pytest.raises(DataContractError, match="field out_dir"):
        confined_output(settings, REPO_ROOT / "data", "out_dir")  # input root, not an output one
    with pytest.raises(DataContractError, match="field sources"):
        confined_sources(settings, [str(REPO_ROOT / "configs" / "base.yaml")])
