"""Reviewers' resolutions become training labels: inbox -> labels -> training rows -> scorer."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from tasks.core.reviewer_labels import label_counts, training_rows, with_reviewer_labels
from tasks.schemas import InboxItem
from tasks.services import panel
from tasks.services.reviewer_labels import reviewer_labels
from tasks.services.runtime import Runtime
from tasks.services.training import embed_split, fit_and_calibrate
from tasks.settings import load_settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WORDS = ["nephrotoxicity", "rash", "hepatitis", "neutropenia", "pharmacokinetics", "trial design"]


def _literature(source_id: str) -> InboxItem:
    return InboxItem(
        item_id=f"literature:{source_id}",
        kind="literature",
        source_id=source_id,
        source="nightly-literature-scan",
        reason="case_candidate",
        day_zero=date(2026, 11, 30),
        clock_days=15,
        due_date=date(2026, 12, 15),
        priority=3,
        evidence={"abstract": "Acute renal failure after cisplatin in a 54-year-old woman."},
    )


def _rows() -> pl.DataFrame:
    """Twelve train rows (two MeSH positives), six calibration rows, two test rows."""
    splits = ["train"] * 12 + ["calibration"] * 6 + ["test"] * 2
    ids = [f"pmid-{i:02d}" for i in range(len(splits))]
    positives = {"pmid-00", "pmid-01", "pmid-12", "pmid-13"}
    return pl.DataFrame(
        {
            "item_id": ids,
            "content_hash": [f"h-{i}" for i in ids],
            "title": [f"Cisplatin and {WORDS[i % len(WORDS)]}" for i in range(len(ids))],
            "abstract": [f"Patients on cisplatin; {WORDS[i % len(WORDS)]}." for i in range(20)],
            "pub_date": [NOW.date()] * len(ids),
            "products": [["cisplatin"]] * len(ids),
            "split": splits,
            "label_ade": [i in positives for i in ids],
        }
    )


def test_human_resolutions_win_over_mesh_and_reach_the_trained_scorer(isolated_home):
    runtime = Runtime.for_settings(load_settings(scorer={"artifact_dir": isolated_home / "scorer"}))
    inbox = runtime.inbox
    inbox.add([_literature(i) for i in ("pmid-02", "pmid-19", "pmid-13", "pmid-05")], now=NOW)
    resolve = {"at": NOW, "reason_sha256": "0" * 64}
    inbox.resolve("literature:pmid-02", outcome="confirmed_icsr", reviewer="dr-a", **resolve)
    inbox.resolve("literature:pmid-19", outcome="confirmed_icsr", reviewer="dr-b", **resolve)
    inbox.resolve("literature:pmid-13", outcome="not_icsr", reviewer="dr-a", **resolve)
    inbox.resolve("literature:pmid-05", outcome="not_icsr", reviewer=panel.REVIEWER, **resolve)

    labels = reviewer_labels(runtime)
    assert sorted(labels.iter_rows()) == [
        ("pmid-02", True),
        ("pmid-13", False),
        ("pmid-19", True),
    ]  # the panel's closure is a model's opinion, not a label

    rows = with_reviewer_labels(_rows(), labels)
    train = training_rows(rows, negatives_per_positive=2, seed=7)
    calibration = rows.filter(pl.col("split") == "calibration")
    by_id = dict(train.select("item_id", "label_ade").iter_rows())
    assert by_id["pmid-02"] is True  # MeSH said no, the reviewer said case: the reviewer wins
    assert by_id["pmid-19"] is True  # a test-split item a reviewer resolved is trained on
    assert "pmid-13" not in by_id  # a calibration item stays in calibration, relabelled
    assert calibration.filter(pl.col("item_id") == "pmid-13")["label_ade"].to_list() == [False]
    used = label_counts(pl.concat([train, calibration]))
    assert used == {"reviewer": 3, "mesh": train.height + calibration.height - 3}

    x_train = embed_split(runtime, train, workflow="train-scorer", run_id="r", now=NOW)
    x_cal = embed_split(runtime, calibration, workflow="train-scorer", run_id="r", now=NOW)
    y_train, y_cal = train["label_ade"].to_numpy(), calibration["label_ade"].to_numpy()
    scorer = fit_and_calibrate(runtime, x_train, y_train, x_cal, y_cal, used)
    assert scorer.meta.training["label_counts"] == used
    assert scorer.meta.training["train_positives"] == 4  # two by MeSH, two by reviewers
