"""The error tree of pharmalane. Every message says what to do next.

    PharmalaneError
    ├── ConfigError          a settings or config file is missing or wrong
    ├── DataContractError    input breaks its schema; carries the record and field
    │   ├── CaseConflict     a case id already names a different report (or submitter)
    │   └── AlreadyResolved  a review item was resolved before: the first resolution stands
    ├── PolicyDenied         the supervisor refused an action; carries the reason code
    ├── BudgetExceeded       a reservation would overspend a workflow budget
    └── BackendUnavailable   a model backend or store cannot be reached

DataContractError is never retried: the same bad data fails the same way.
"""

from __future__ import annotations


class PharmalaneError(Exception):
    """Root of every error pharmalane raises on purpose."""


class ConfigError(PharmalaneError):
    """A config file or setting is missing or invalid."""


class DataContractError(PharmalaneError):
    """Input data breaks its contract.

    Args:
        message: what is wrong and what to do.
        record: the record's id (pmid, case id, file name), when known.
        field: the field at fault, when known.
    """

    def __init__(self, message: str, *, record: str | None = None, field: str | None = None):
        where = ", ".join(
            part
            for part in (
                f"record {record}" if record is not None else "",
                f"field {field}" if field is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.record = record
        self.field = field


class CaseConflict(DataContractError):
    """A case id already names a different report, or another submitter's report.

    Nothing was stored and nothing was overwritten: the sender must send the report again under
    a new case id. Raised instead of answering with the first report's decision, which would
    silently drop this one.
    """


class AlreadyResolved(DataContractError):
    """A review item was already resolved; the first resolution stands and nothing changed.

    Whichever path (API, CLI) resolves an item first wins; every later attempt gets this.
    """


class PolicyDenied(PharmalaneError):
    """The supervisor refused an action."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class BudgetExceeded(PharmalaneError):
    """A reservation would take a workflow over its budget for the period."""


class BackendUnavailable(PharmalaneError):
    """A model backend or a store cannot be reached; retrying later may help."""
