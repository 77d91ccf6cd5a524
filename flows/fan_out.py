"""Fan-out of a flow's independent work units (the scan's chunks) on Dask, chosen by settings.

``scan.executor``:

- ``sequential`` (the default, ``make run``): each unit is called in the flow's process, one
  after another, exactly the plain loop it always was.
- ``local-cluster``: prefect-dask's ``DaskTaskRunner`` on a ``LocalCluster`` of ``scan.workers``
  processes (one thread each), started at the first submitted unit and closed with the run.
- ``address``: the same runner on an existing Dask cluster (``scan.dask_address``, e.g. the
  scheduler of a dask-kubernetes cluster); the run only connects to it.

Why it is safe: a unit holds disjoint items and every write it makes is keyed (the lake's
``append_new`` under a per-dataset lock, LanceDB's ``merge_insert`` on id, the budget's
``BEGIN IMMEDIATE``), so units may finish in any order and a unit re-run after its worker died
writes nothing twice. Results come back in submission order, and at most two units per worker
are in flight, so the flow never holds every chunk of a block at once. A unit already running
on a Dask worker (a child run there) runs its own units in its process: a worker cannot start
a cluster of its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import Task
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner

from tasks.settings import ScanSettings

R = TypeVar("R")
UNITS_PER_WORKER = 2  # one running, one shipped and waiting: a worker never idles between units


class FanOut:
    """Runs a task over many parameter sets: in this process, or on a Dask task runner."""

    def __init__(self, runner: TaskRunner[Any] | None = None, in_flight: int = 1):
        self.runner, self.in_flight = runner, in_flight

    @property
    def executor(self) -> str:
        return "sequential" if self.runner is None else "dask"

    def map(self, task: Task[..., R], calls: Iterable[dict[str, Any]]) -> Iterator[R]:
        """``task(**call)`` for each call, results in the order of ``calls``.

        Raises:
            Exception: the first unit that failed (after its own retries), as it raised.
        """
        if self.runner is None:
            for call in calls:
                yield task(**call)
            return
        pending: deque[PrefectFuture[R]] = deque()
        for call in calls:
            pending.append(self.runner.submit(task, call))
            if len(pending) >= self.in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextmanager
def fan_out(settings: ScanSettings) -> Iterator[FanOut]:
    """The run's fan-out per ``settings.executor``; a cluster it started is closed on exit.

    Dask is imported only here (~2 s): a sequential run, the default, never loads it.
    """
    if settings.executor == "sequential" or _on_a_dask_worker():
        yield FanOut()
        return
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.executor == "address":
        runner = DaskTaskRunner(address=settings.dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.workers,
                "threads_per_worker": 1,  # one chunk per process; torch takes the core
                "processes": True,
                "dashboard_address": None,
            }
        )
    with runner:  # the cluster starts at the first submit, not for a run with nothing to do
        yield FanOut(runner, in_flight=UNITS_PER_WORKER * settings.workers)


def _on_a_dask_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True
