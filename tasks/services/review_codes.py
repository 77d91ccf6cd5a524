"""One-time review codes and the review form's answer: the UI path to the inbox's one truth.

A reviewer obtains a code with their API key (``POST /reviews/{item_id}/code``, ``pharmalane
review code ITEM``) and types it into the suspended ``review-inbox`` run's form with a decision
and a reason of record. ``answer`` checks the form (no blank field, a reason of record, a code
that pharmalane issued for this item, unexpired, unused, obtained with a reviewer key that is
still configured and not revoked), spends the code and resolves the item through
``inbox.resolve``, like the API and the CLI: the first resolution wins, and the chain's
``human_resolution`` entry names the reviewer key id behind the code.

A refusal is a ``PolicyDenied`` whose code says why; ``refusal_entry`` is its audit chain
entry (codes and ids only: never the code typed, the reason text or the case).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tasks.errors import AlreadyResolved, ConfigError, PolicyDenied
from tasks.io.review_codes import IssuedCode, ReviewCodeStore, code_digest
from tasks.io.shared_state import open_review_codes
from tasks.schemas import OUTCOMES, InboxItem
from tasks.services import inbox
from tasks.services.runtime import Runtime
from tasks.settings import ApiKey, Settings

# Crockford base32: no I, L, O, U, so what a reviewer reads is what they type
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 10  # 50 bits, typed as XXXXX-XXXXX
_TYPED_ALIKE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_SHAPE = re.compile(f"^[{ALPHABET}]{{{CODE_CHARS}}}$")


@dataclass(frozen=True)
class Code:
    """A code as handed to its reviewer, once; the store keeps only its hash."""

    code: str
    item_id: str
    key_id: str
    expires_at: datetime


def _salt(settings: Settings) -> str:
    if settings.triage.key_salt is None:
        raise ConfigError("set PHARMALANE_TRIAGE__KEY_SALT: review codes are hashed with it")
    return settings.triage.key_salt.get_secret_value()


def _store(settings: Settings) -> ReviewCodeStore:
    return open_review_codes(settings.shared_database, settings.review_codes_db)


def normalised(typed: str) -> str:
    """The code as stored: upper case, dashes and spaces dropped, O/I/L read as 0/1/1."""
    return "".join(typed.split()).replace("-", "").upper().translate(_TYPED_ALIKE)


def issue_code(runtime: Runtime, ref: str, key: ApiKey, *, now: datetime) -> Code:
    """A new one-time code for the open item ``ref``, obtained with ``key``.

    The key's role is stored with the code and checked when it is used; the HTTP app and the
    CLI already refuse to issue one to a key that is not a reviewer's.

    Raises:
        DataContractError: no such item; AlreadyResolved when it is resolved.
        ConfigError: no key salt.
    """
    item = inbox.find(runtime, ref)
    if item.status != "open":
        raise AlreadyResolved(
            f"already resolved ({item.outcome} by {item.reviewer})", record=item.item_id
        )
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
    minutes = runtime.settings.review.code_ttl_minutes
    issued = IssuedCode(item.item_id, key.key_id, key.role, now + timedelta(minutes=minutes))
    _store(runtime.settings).issue(code_digest(_salt(runtime.settings), code), issued, now=now)
    shown = f"{code[:5]}-{code[5:]}"
    return Code(shown, item.item_id, key.key_id, issued.expires_at)


def decisions(kind: str) -> list[str]:
    """The outcomes a reviewer may choose for an item of ``kind`` (accept's first)."""
    return list(OUTCOMES[kind].values())


def answer(
    runtime: Runtime, item_id: str, *, decision: str, reason: str, code: str, now: datetime
) -> InboxItem:
    """Resolve ``item_id`` with a review form's answer, as the reviewer behind ``code``.

    Every field is checked before the code is spent, so a refused answer costs no code.

    Raises:
        PolicyDenied: REVIEW_FORM_BLANK, REVIEW_DECISION_UNKNOWN, REVIEW_REASON_TOO_SHORT, a
            REVIEW_CODE_* refusal (``SqliteReviewCodes.redeem``) or REVIEW_CODE_KEY_REVOKED.
        AlreadyResolved: the item was resolved first on another path; nothing changed.
    """
    item = inbox.find(runtime, item_id)
    if item.status != "open":
        raise AlreadyResolved(
            f"already resolved ({item.outcome} by {item.reviewer})", record=item.item_id
        )
    verdict = _checked_form(item, decision, reason, code)
    settings = runtime.settings
    digest = code_digest(_salt(settings), normalised(code))
    issued = _store(settings).redeem(digest, item_id=item.item_id, now=now)
    key = next((k for k in settings.triage.api_keys if k.key_id == issued.key_id), None)
    if key is None or key.revoked or key.role != "reviewer":
        raise PolicyDenied(
            "REVIEW_CODE_KEY_REVOKED",
            f"the key behind this review code ({issued.key_id}) is revoked or no reviewer's",
        )
    return inbox.resolve(
        runtime, item.item_id, verdict=verdict, reviewer=issued.key_id, reason=reason, at=now
    )


def _checked_form(item: InboxItem, decision: str, reason: str, code: str) -> str:
    """The accept|reject verdict the form's decision means, once every field is usable."""
    fields = (("decision", decision), ("reason", reason), ("review code", code))
    blank = [name for name, value in fields if not value.strip()]
    if blank:
        raise PolicyDenied("REVIEW_FORM_BLANK", f"fill in: {', '.join(blank)}")
    verdicts = {outcome: verdict for verdict, outcome in OUTCOMES[item.kind].items()}
    if decision not in verdicts:
        raise PolicyDenied(
            "REVIEW_DECISION_UNKNOWN", f"decide one of {', '.join(decisions(item.kind))}"
        )
    if len("".join(reason.split())) < 3:
        raise PolicyDenied("REVIEW_REASON_TOO_SHORT", "the reason of record needs 3 characters")
    if not _CODE_SHAPE.match(normalised(code)):
        raise PolicyDenied(
            "REVIEW_CODE_UNKNOWN", f"a review code has {CODE_CHARS} letters and digits"
        )
    return verdicts[decision]


def refusal_entry(
    item_id: str, *, run_id: str, attempt: str, refusal: PolicyDenied, at: datetime
) -> dict[str, str | list[str]]:
    """The chain entry of a refused form answer: which run, item and attempt, and why.

    Keyed by run and attempt, so a resumed run that re-reads an earlier answer adds nothing.
    """
    return {
        "key": f"review-refused:{run_id}:{attempt}",
        "kind": "review_answer_refused",
        "workflow": "review-inbox",
        "item_id": item_id,
        "flow_run_id": run_id,
        "attempt": attempt,
        "reason_codes": [refusal.code],
        "at": at.isoformat(),
    }


RESOLVED = "resolved"
ALREADY_RESOLVED = "already_resolved"


def review_batch(runtime: Runtime, item_ids: list[str] | None) -> list[InboxItem]:
    """The items one review run walks, most urgent first (priority, then due date).

    ``item_ids`` None: every open item. Items resolved since are kept: the run skips them
    with "already resolved".
    """
    if item_ids is None:
        items = inbox.open_items(runtime)
    else:
        items = [inbox.find(runtime, ref) for ref in dict.fromkeys(item_ids)]
    return sorted(items, key=lambda i: (i.priority, i.due_date, i.item_id))


def judged(runtime: Runtime, run_id: str) -> dict[str, str]:
    """What run ``run_id`` decided of each form answer so far: attempt key -> result."""
    return _store(runtime.settings).attempts(run_id)


def judge(
    runtime: Runtime,
    item_id: str,
    *,
    run_id: str,
    attempt: str,
    form: dict[str, str],
    now: datetime,
) -> str:
    """Judge one form answer (decision, reason, review_code) once, and record the result.

    Returns ``resolved``, ``already_resolved`` (another path was first: nothing changed), or
    the refusal ``CODE: message``, chained as a ``review_answer_refused`` entry. A run that
    judged this attempt before gets its recorded result back and nothing happens twice.
    """
    store = _store(runtime.settings)
    known = store.attempts(run_id).get(attempt)
    if known is not None:
        return known
    try:
        answer(
            runtime,
            item_id,
            decision=form.get("decision", ""),
            reason=form.get("reason", ""),
            code=form.get("review_code", ""),
            now=now,
        )
        result = RESOLVED
    except AlreadyResolved:
        result = ALREADY_RESOLVED
    except PolicyDenied as refusal:
        result = str(refusal)
        entry = refusal_entry(item_id, run_id=run_id, attempt=attempt, refusal=refusal, at=now)
        runtime.audit.append([entry], now=now)
    return store.record_attempt(run_id, attempt, item_id=item_id, result=result, now=now)


def skipped(runtime: Runtime, item_id: str, *, run_id: str, attempt: str, now: datetime) -> str:
    """Record that the run did not ask about ``item_id`` again: it was resolved elsewhere."""
    store = _store(runtime.settings)
    return store.record_attempt(run_id, attempt, item_id=item_id, result=ALREADY_RESOLVED, now=now)


def unscheduled(runtime: Runtime) -> list[str]:
    """Open inbox items no review run was started for, most urgent first."""
    return runtime.inbox.unscheduled()


def mark_scheduled(runtime: Runtime, item_ids: list[str], run_id: str, now: datetime) -> None:
    """Record the review run started for ``item_ids``."""
    runtime.inbox.mark_scheduled(item_ids, flow_run_id=run_id, at=now)
