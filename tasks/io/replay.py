"""Replay cases against a running intake service at a steady rate (open loop).

Request i is due at ``start + i / rate`` whatever happened to the ones before, and its latency
is measured from that due time to the decision, so a slow server cannot hide its queue
(no coordinated omission). Bounded both in count and in wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


@dataclass
class ReplayResult:
    rate: float
    sent: int = 0
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    lanes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else None

    def summary(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate,
            "sent": self.sent,
            "ok": self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "lanes": dict(sorted(self.lanes.items())),
            "p50_s": self.percentile(50),
            "p99_s": self.percentile(99),
            "max_s": max(self.latencies_s) if self.latencies_s else None,
            "achieved_per_s": self.sent / self.elapsed_s if self.elapsed_s else 0.0,
        }


def replay(
    base_url: str,
    api_key: str,
    cases: Sequence[dict[str, Any]],
    *,
    rate: float,
    max_seconds: float,
    workers: int = 64,
    timeout_s: float = 30.0,
    on_answer: Callable[[int], None] | None = None,
) -> ReplayResult:
    """POST ``cases`` to ``base_url``/cases at ``rate`` per second for at most ``max_seconds``."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    result = ResultLock(ReplayResult(rate=rate))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    count = min(len(cases), int(rate * max_seconds) + 1)
    with (
        httpx.Client(base_url=base_url, timeout=timeout_s, limits=limits) as client,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        start = time.perf_counter()

        def send(i: int, due: float) -> None:
            try:
                response = client.post("/cases", json=cases[i], headers={"X-API-Key": api_key})
                latency = time.perf_counter() - due
                lane = response.json().get("lane", "?") if response.status_code == 200 else "-"
                result.record(response.status_code, latency, lane)
            except httpx.HTTPError:
                result.fail()
            if on_answer:
                on_answer(i)

        for i in range(count):
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, i, due)
        pool.shutdown(wait=True)
        result.value.elapsed_s = time.perf_counter() - start
        result.value.sent = count
    return result.value


class ResultLock:
    def __init__(self, value: ReplayResult):
        self.value, self._lock = value, threading.Lock()

    def record(self, status: int, latency: float, lane: str) -> None:
        with self._lock:
            self.value.lanes[lane] = self.value.lanes.get(lane, 0) + 1
            self.value.statuses[status] = self.value.statuses.get(status, 0) + 1
            if status == 200:
                self.value.latencies_s.append(latency)

    def fail(self) -> None:
        with self._lock:
            self.value.errors += 1
