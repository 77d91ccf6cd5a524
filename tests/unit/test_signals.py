import math

import polars as pl
import pytest

from tasks.core.signals import Z95, disproportionality


def _table(a, b, c, d):
    return pl.DataFrame(
        {
            "table": ["t"] * 4,
            "drug": ["x", "x", "Other", "Other"],
            "event": ["E", "Other", "E", "Other"],
            "n": [a, b, c, d],
        }
    )


def test_prr_and_ror_follow_the_2x2_definitions():
    a, b, c, d = 20, 80, 100, 9800
    row = disproportionality(_table(a, b, c, d)).row(0, named=True)
    prr = (a / (a + b)) / (c / (c + d))
    ror = a * d / (b * c)
    se = math.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
    assert row["reports"] == a
    assert row["prr"] == pytest.approx(prr)
    assert row["ror"] == pytest.approx(ror)
    assert row["prr_lower"] == pytest.approx(math.exp(math.log(prr) - Z95 * se))
    assert row["prr_lower"] < row["prr"] < row["prr_upper"]
    assert row["ror_lower"] < row["ror"] < row["ror_upper"]
    assert row["signal"] is True


def test_only_named_pairs_are_reported_and_other_rows_feed_totals():
    out = disproportionality(_table(20, 80, 100, 9800))
    assert out.select("drug", "event").rows() == [("x", "E")]


def test_a_zero_cell_has_no_interval_and_is_never_a_signal():
    row = disproportionality(_table(5, 0, 100, 9800)).row(0, named=True)
    assert row["prr"] is None and row["ror_lower"] is None and row["signal"] is False


def test_fewer_reports_than_the_minimum_is_not_a_signal_even_when_disproportionate():
    row = disproportionality(_table(2, 8, 10, 99000)).row(0, named=True)
    assert row["prr_lower"] > 1 and row["signal"] is False


def test_expected_ratio_is_not_a_signal():
    row = disproportionality(_table(10, 990, 100, 9900)).row(0, named=True)
    assert row["prr"] == pytest.approx(1.0) and row["signal"] is False
