"""The intake service: ``POST /cases`` answers a triage decision in well under a second.

An app factory (``create_app``) so tests and the benchmark build the real app over a store of
their choice. Order of checks per request: body size (413) -> API key (401, revoked too) ->
role (403) -> per-key rate limit (429) -> pydantic validation (422: malformed JSON, unknown
fields) -> idempotency by case id -> triage. Nothing here logs case content.
"""

import hashlib
import hmac
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import ConfigError, DataContractError
from tasks.schemas import IcsrCase, TriageDecision
from tasks.settings import ApiKey, Settings
from tasks.steps.triage import Triager, utcnow

Role = Literal["submitter", "reviewer"]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def hash_key(salt: str, key: str) -> str:
    """How a key is stored: sha256 of the per-deployment salt and the key, hex."""
    return hashlib.sha256((salt + key).encode("utf-8")).hexdigest()


def lookup_key(keys: Iterable[ApiKey], salt: str, presented: str) -> ApiKey | None:
    """The configured key ``presented`` hashes to (compared in constant time), or None.

    Revocation and role are the caller's checks: the HTTP app and the review CLI share this.
    """
    digest = hash_key(salt, presented)
    return next((k for k in keys if hmac.compare_digest(k.sha256, digest)), None)


class BodyLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0
        started = False

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body above {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str) -> bool:
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key_id] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["accept", "reject"]
    reason: str = Field(min_length=3, max_length=2000, description="the reason of record")


def create_app(
    settings: Settings,
    triager: Triager | None = None,
    *,
    rate_clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The intake app over ``settings``; builds the triager (and loads the model) if not given.

    Raises:
        ConfigError: no key salt in the environment or no API key configured.
    """
    if settings.triage.key_salt is None:
        raise ConfigError("set PHARMALANE_TRIAGE__KEY_SALT: API keys are hashed with it")
    if not settings.triage.api_keys:
        raise ConfigError(
            "no API keys: add triage.api_keys to configs or PHARMALANE_TRIAGE__API_KEYS "
            "(hash with `pharmalane triage hash-key`)"
        )
    salt = settings.triage.key_salt.get_secret_value()
    keys = settings.triage.api_keys
    engine = triager or Triager.build(settings)
    limiter = RateLimiter(settings.triage.rate_per_minute, rate_clock)

    app = FastAPI(
        title="pharmalane urgent AE triage",
        description="Intake of ICSR-like reports; answers validity, seriousness and the clock.",
        version="0.1.0",
    )
    app.add_middleware(BodyLimit, limit=settings.triage.max_body_bytes)

    def caller(x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        if not x_api_key:
            raise HTTPException(401, "missing X-API-Key header")
        match = lookup_key(keys, salt, x_api_key)
        if match is None:
            raise HTTPException(401, "unknown API key")
        if match.revoked:
            raise HTTPException(401, f"API key {match.key_id} is revoked")
        if not limiter.allow(match.key_id):
            raise HTTPException(429, f"rate limit of {limiter.capacity:.0f}/min exceeded")
        return match

    def role(*allowed: Role) -> Callable[[ApiKey], ApiKey]:
        def check(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
            if key.role not in allowed:
                raise HTTPException(403, f"role {key.role} may not do this; needs {allowed}")
            return key

        return check

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/cases", response_model=TriageDecision)
    def submit(
        case: IcsrCase,
        response: Response,
        _key: Annotated[ApiKey, Depends(role("submitter"))],
    ) -> TriageDecision:
        decision, created = engine.triage(case)
        response.headers["Idempotent-Replay"] = "false" if created else "true"
        return decision

    @app.get("/cases/{case_id}", response_model=TriageDecision)
    def read(
        case_id: str, _key: Annotated[ApiKey, Depends(role("submitter", "reviewer"))]
    ) -> TriageDecision:
        decision = engine.store.decision(case_id)
        if decision is None:
            raise HTTPException(404, f"case {case_id} is unknown")
        return decision

    @app.get("/reviews", response_model=list[TriageDecision])
    def held(_key: Annotated[ApiKey, Depends(role("reviewer"))]) -> list[TriageDecision]:
        return engine.store.held()

    @app.post("/reviews/{case_id}", response_model=TriageDecision)
    def review(
        case_id: str, body: ReviewIn, key: Annotated[ApiKey, Depends(role("reviewer"))]
    ) -> TriageDecision:
        verdict = "accepted" if body.verdict == "accept" else "rejected"
        try:
            return engine.store.review(
                case_id, verdict=verdict, reviewer=key.key_id, reason=body.reason, at=utcnow()
            )
        except DataContractError as exc:
            raise HTTPException(409 if exc.field == "status" else 404, str(exc)) from exc

    return app
