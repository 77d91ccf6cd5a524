"""The intake service, an entrypoint beside the CLI: ``POST /cases`` answers in under a second.

An app factory (``create_app``) so tests and the benchmark build the real app over a store of
their choice. Order of checks per request: body size (413, declared or streamed) -> client
address throttle on failed keys (429) -> API key (401, revoked too) -> role (403) -> per-key
rate limit (429, shared by every process on this PHARMALANE_HOME) -> content type and UTF-8
(415, 400) -> pydantic validation (422: malformed JSON, unknown fields, bad values) ->
idempotency per submitter and payload (409 for a reused id) -> triage.

The body is read only after the key is checked, so an unauthenticated caller learns nothing
from parsing. Nothing here logs case content, and no error answer repeats an input value.
"""

import codecs
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.errors import AlreadyResolved, CaseConflict, ConfigError, DataContractError
from tasks.intake import IcsrCase, TriageDecision
from tasks.schemas import InboxItem
from tasks.services import inbox, review_codes
from tasks.services.runtime import Runtime, utcnow
from tasks.services.triage import Triager
from tasks.services.triage_access import Gate, Refusal
from tasks.settings import ApiKey, Settings

Role = Literal["submitter", "reviewer"]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Body = TypeVar("Body", bound=BaseModel)


class BodyLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes, declared or streamed (chunked).

    The body (bounded by ``limit``) is read in full before the app runs and handed to it
    whole, so a chunked body that grows too large is answered 413 before anything is parsed.
    """

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
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await _too_large(send, self.limit)
                return
            if not message.get("more_body", False):
                break
        whole: MutableMapping[str, Any] = {"type": "http.request", "body": b"".join(chunks)}
        handed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal handed
            if handed:
                return await receive()  # after the body: wait for a disconnect
            handed = True
            return whole

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body above {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    verdict: Literal["accept", "reject", "changes"]  # changes: a draft sent back
    reason: str = Field(min_length=3, max_length=2000, description="the reason of record")

    @field_validator("reason")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if len("".join(value.split())) < 3:
            raise ValueError("the reason of record needs at least 3 characters that are not spaces")
        return value


def _loc_part(part: Any) -> str | int:
    # a location names a field; an unknown field's name is input, so it is cut short
    return part if isinstance(part, int) else str(part)[:64]


def safe_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as location, type and message only: never the input or its context."""
    return [
        {
            "loc": [_loc_part(p) for p in error.get("loc", ())],
            "type": str(error.get("type", "")),
            "msg": str(error.get("msg", "")),
        }
        for error in errors
    ]


async def _validation_problem(_request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": safe_errors(errors)})


def _media_type(header: str) -> tuple[str, str]:
    """(media type, charset) of a Content-Type header, lower-cased; no charset means UTF-8."""
    media, *params = [part.strip().lower() for part in header.split(";")]
    charsets = [p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")]
    return media, (charsets or ["utf-8"])[0]


def _json_text(request: Request, body: bytes) -> bytes:
    """``body`` if it is declared and encoded as UTF-8 JSON; else 415 or 400, naming why."""
    media, charset = _media_type(request.headers.get("content-type", ""))
    if media != "application/json" or charset not in ("utf-8", "utf8"):
        raise HTTPException(415, "send the body as Content-Type: application/json in UTF-8")
    if body.startswith(codecs.BOM_UTF8):
        raise HTTPException(400, "the body starts with a byte order mark: send UTF-8 without one")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the body is not valid UTF-8: send UTF-8 JSON") from None
    if b"\x00" in body:  # UTF-16 without a byte order mark decodes as UTF-8 with NULs
        raise HTTPException(400, "the body holds NUL bytes (UTF-16?): send UTF-8 JSON")
    return body


async def parse_body(request: Request, model: type[Body], **context: Any) -> Body:
    """The request's JSON body as ``model``, read only now (after the key check)."""
    body = _json_text(request, await request.body())
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([e | {"loc": ("body", *e["loc"])} for e in errors]) from None


def _raise(refusal: Refusal) -> NoReturn:
    headers = None
    if refusal.retry_after_s is not None:
        headers = {"Retry-After": str(refusal.retry_after_s)}
    raise HTTPException(refusal.status, refusal.detail, headers=headers)


def _body_schema(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _document_bodies(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Bodies are parsed by hand after the key check; put their schemas back into OpenAPI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                own = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(own.pop("$defs", {}))
                components[model.__name__] = own
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings,
    triager: Triager | None = None,
    *,
    rate_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The intake app over ``settings``; builds the triager (and loads the model) if not given.

    Args:
        rate_clock: wall-clock seconds for the shared rate buckets (comparable across processes).

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
    gate = Gate(settings, settings.triage.key_salt.get_secret_value(), rate_clock)
    engine = triager or Triager.build(Runtime.for_settings(settings))
    app = FastAPI(
        title="pharmalane urgent AE triage",
        description="Intake of ICSR-like reports; answers validity, seriousness and the clock.",
        version="0.2.0",
    )
    app.add_middleware(BodyLimit, limit=settings.triage.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    _document_bodies(app, [IcsrCase, ReviewIn])
    _routes(app, engine, gate)
    return app


Check = Callable[..., ApiKey]


def _roles(gate: Gate) -> tuple[Check, Check, Check]:
    """Dependencies for (submitter, reviewer, either): the gate, then the key's role (403)."""

    def caller(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
        checked = gate.check(request.client.host if request.client else "unknown", x_api_key)
        if isinstance(checked, Refusal):
            _raise(checked)
        return checked

    def role(*allowed: Role) -> Check:
        def check(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
            if key.role not in allowed:
                raise HTTPException(403, f"role {key.role} may not do this; needs {allowed}")
            return key

        return check

    return role("submitter"), role("reviewer"), role("submitter", "reviewer")


def _routes(app: FastAPI, engine: Triager, gate: Gate) -> None:
    submitter, reviewer, anyone = _roles(gate)

    async def case_body(request: Request, _key: Annotated[ApiKey, Depends(submitter)]) -> IcsrCase:
        return await parse_body(request, IcsrCase, now=engine.clock())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/cases", response_model=TriageDecision, openapi_extra=_body_schema("IcsrCase"))
    def submit(
        response: Response,
        key: Annotated[ApiKey, Depends(submitter)],
        case: Annotated[IcsrCase, Depends(case_body)],
    ) -> TriageDecision:
        try:
            decision, created = engine.triage(case, key.key_id)
        except CaseConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        response.headers["Idempotent-Replay"] = "false" if created else "true"
        return decision

    @app.get("/cases/{case_id}", response_model=TriageDecision)
    def read(case_id: str, key: Annotated[ApiKey, Depends(anyone)]) -> TriageDecision:
        # a submitter sees only its own cases; another's id is as unknown as a missing one
        own = key.key_id if key.role == "submitter" else None
        decision = engine.store.decision(case_id, submitter=own)
        if decision is None:
            raise HTTPException(404, "no case with this id for this key")
        return decision

    _review_routes(app, Runtime.for_settings(engine.settings), reviewer)


class ReviewItem(BaseModel):
    """An inbox item as a reviewer reads it: clock, status, outcome and the evidence."""

    item_id: str
    kind: str
    source_id: str
    source: str
    reason: str
    day_zero: date
    clock_days: int
    due_date: date
    priority: int
    status: str
    outcome: str | None
    reviewer: str | None
    resolved_at: datetime | None
    evidence: dict[str, Any]

    @classmethod
    def of(cls, item: InboxItem) -> "ReviewItem":
        return cls.model_validate(item, from_attributes=True)


class ReviewCode(BaseModel):
    """A one-time review code: typed into the item's review form, valid once, until expiry."""

    item_id: str
    code: str
    expires_at: datetime


def _review_routes(app: FastAPI, runtime: Runtime, reviewer: Check) -> None:
    async def review_body(request: Request, _key: Annotated[ApiKey, Depends(reviewer)]) -> ReviewIn:
        return await parse_body(request, ReviewIn)

    @app.get("/reviews", response_model=list[ReviewItem])
    def open_items(_key: Annotated[ApiKey, Depends(reviewer)]) -> list[ReviewItem]:
        return [ReviewItem.of(i) for i in inbox.open_items(runtime)]

    @app.get("/reviews/{item_id}", response_model=ReviewItem)
    def one(item_id: str, _key: Annotated[ApiKey, Depends(reviewer)]) -> ReviewItem:
        try:
            return ReviewItem.of(inbox.find(runtime, item_id))
        except DataContractError as exc:
            raise HTTPException(404 if exc.field == "item_id" else 409, str(exc)) from exc

    @app.post("/reviews/{item_id}/code", response_model=ReviewCode)
    def code(item_id: str, key: Annotated[ApiKey, Depends(reviewer)]) -> ReviewCode:
        """A one-time code for this item's review form in the Prefect UI (shown once)."""
        try:
            issued = review_codes.issue_code(runtime, item_id, key, now=utcnow())
        except AlreadyResolved as exc:
            raise HTTPException(409, str(exc)) from exc
        except DataContractError as exc:
            raise HTTPException(404 if exc.field == "item_id" else 409, str(exc)) from exc
        return ReviewCode(item_id=issued.item_id, code=issued.code, expires_at=issued.expires_at)

    @app.post(
        "/reviews/{item_id}", response_model=ReviewItem, openapi_extra=_body_schema("ReviewIn")
    )
    def review(
        item_id: str,
        key: Annotated[ApiKey, Depends(reviewer)],
        body: Annotated[ReviewIn, Depends(review_body)],
    ) -> ReviewItem:
        try:
            item = inbox.resolve(
                runtime,
                item_id,
                verdict=body.verdict,
                reviewer=key.key_id,
                reason=body.reason,
                at=utcnow(),
            )
        except AlreadyResolved as exc:
            raise HTTPException(409, str(exc)) from exc
        except DataContractError as exc:
            if exc.field == "item_id":
                raise HTTPException(404, "no review item with this id") from exc
            raise HTTPException(409 if exc.field in ("status", "id") else 422, str(exc)) from exc
        return ReviewItem.of(item)
