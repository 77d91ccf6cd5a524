"""scan.executor: where the scan's chunks run (flows/fan_out.py), checked when settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.settings import ScanSettings


def test_sequential_is_the_default_and_needs_no_cluster():
    scan = ScanSettings()
    assert (scan.executor, scan.dask_address) == ("sequential", None)


def test_an_existing_cluster_needs_its_scheduler_address():
    with pytest.raises(ValidationError, match=r"needs scan\.dask_address"):
        ScanSettings(executor="address")
    scan = ScanSettings(executor="address", dask_address="tcp://dask-scheduler:8786")
    assert scan.dask_address == "tcp://dask-scheduler:8786"


def test_an_unknown_executor_or_no_worker_is_refused():
    with pytest.raises(ValidationError):
        ScanSettings(executor="threads")
    with pytest.raises(ValidationError):
        ScanSettings(executor="local-cluster", workers=0)
