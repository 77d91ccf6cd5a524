"""Amounts in reports: a real cost is never shown as zero."""

import pytest

from tasks.core.finops_render import usd


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (8 * (120 / 1000 * 0.00001 + 40 / 1000 * 0.0001), "41.600 µ$"),  # eight verdict calls
        (0.000000001, "0.001 µ$"),  # one nano-dollar
        (0.0, "0.000 µ$"),
        (0.76, "760,000.000 µ$"),
        (12.5, "$12.500000"),
    ],
)
def test_amounts_keep_their_micro_dollars(amount, shown):
    assert usd(amount) == shown
