"""Who may call the intake service, and may they now: API keys, roles aside, rate limits.

Plain Python under the HTTP app (``flows/triage_app.py``) and the review CLI, which both
authenticate with ``lookup_key``. Keys are stored only as sha256(salt + key).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tasks.io.rate_limit import retry_after
from tasks.io.shared_state import open_request_buckets
from tasks.settings import ApiKey, Settings


def hash_key(salt: str, key: str) -> str:
    """How a key is stored: sha256 of the per-deployment salt and the key, hex."""
    return hashlib.sha256((salt + key).encode("utf-8")).hexdigest()


def lookup_key(keys: Iterable[ApiKey], salt: str, presented: str) -> ApiKey | None:
    """The configured key ``presented`` hashes to (compared in constant time), or None.

    Revocation and role are the caller's checks: the HTTP app and the review CLI share this.
    """
    digest = hash_key(salt, presented)
    return next((k for k in keys if hmac.compare_digest(k.sha256, digest)), None)


@dataclass(frozen=True)
class Refusal:
    """Why a caller is turned away: an HTTP status, a message, and when to retry (429)."""

    status: int
    detail: str
    retry_after_s: int | None = None


def _too_many(what: str, wait_s: float) -> Refusal:
    seconds = retry_after(wait_s)
    return Refusal(429, f"{what}; retry in {seconds} s", seconds)


class Gate:
    """The address throttle, the key check and the key's bucket, in that order.

    Failed keys (missing, unknown, revoked) spend the client address's bucket, and an address
    whose bucket is empty is refused before its key is even looked at: a brute-force burst is
    slowed, not answered. Buckets live in SQLite (every server process on the host shares them)
    or, with ``PHARMALANE_DATABASE_URL``, in PostgreSQL (every replica on every host does).
    """

    def __init__(self, settings: Settings, salt: str, clock: Callable[[], float]):
        self.triage = settings.triage
        self.salt, self.clock = salt, clock
        self.keys = settings.triage.api_keys
        self.buckets = open_request_buckets(settings.shared_database, settings.triage_limits_db)

    def _match(self, presented: str | None) -> tuple[ApiKey | None, str]:
        if not presented:
            return None, "missing X-API-Key header"
        match = lookup_key(self.keys, self.salt, presented)
        if match is None:
            return None, "unknown API key"
        if match.revoked:
            return None, f"API key {match.key_id} is revoked"
        return match, ""

    def check(self, address: str, presented: str | None) -> ApiKey | Refusal:
        """The caller's key, or why it may not call now (401 or 429)."""
        address = f"addr:{address}"
        now, per_address = self.clock(), self.triage.failed_auth_per_minute
        throttled = "too many requests without a valid API key from this address"
        if wait := self.buckets.wait(address, per_address, now):
            return _too_many(throttled, wait)
        key, problem = self._match(presented)
        if key is None:
            if wait := self.buckets.take(address, per_address, now):
                return _too_many(throttled, wait)
            return Refusal(401, problem)
        if wait := self.buckets.take(f"key:{key.key_id}", self.triage.rate_per_minute, now):
            return _too_many(f"rate limit of {self.triage.rate_per_minute}/min exceeded", wait)
        return key
