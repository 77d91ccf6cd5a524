"""Source ``medline-updates``: NLM's daily MEDLINE/PubMed update files, one after another.

- The files still to process are those listed after the watermark (the last file whose records
  were all decided), in file order (``tasks/core/update_files.py``); before the first run, from
  ``medline_updates.start_from`` or only the newest.
- A file is downloaded resumably and checked (md5, whole gzip) by ``tasks/io/update_files.py``
  into ``PHARMALANE_HOME/literature/updatefiles/`` (0700; files 0600). A refused file stops the
  run there: nothing from it is screened and the watermark stays before it.
- Its records go through the scan block by block; its ``<DeleteCitation>`` pmids are withdrawn
  (``tasks/services/revisions.py``); then, and only then, the watermark moves to it and the
  file is deleted (unless ``keep_processed``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tasks.core.update_files import files_after
from tasks.io.literature_state import LiteratureMarks
from tasks.io.medline import deleted_citations
from tasks.io.shared_state import open_literature_state
from tasks.io.update_files import UpdateFiles
from tasks.services import revisions
from tasks.services.revisions import Withdrawn
from tasks.services.runtime import Runtime
from tasks.settings import Settings

SOURCE = "medline-updates"
WATERMARK = "files"  # one watermark for the whole folder: the last file processed


def _state(settings: Settings) -> LiteratureMarks:
    return open_literature_state(settings.shared_database, settings.literature_dir / "state.sqlite")


def folder(settings: Settings) -> Path:
    """Where update files are downloaded (owner-only)."""
    return settings.literature_dir / "updatefiles"


def pending_files(runtime: Runtime) -> list[str]:
    """The update files listed after the watermark, in file order."""
    settings = runtime.settings
    with UpdateFiles(settings.medline_updates) as client:
        listed = client.listing()
    mark = _state(settings).watermark(SOURCE, WATERMARK)
    return files_after(listed, mark, settings.medline_updates.start_from)


def download(runtime: Runtime, name: str) -> Path:
    """``name`` on disk, whole and checked.

    Raises:
        DataContractError: md5 mismatch or truncated gzip (the file is named).
        BackendUnavailable: the server kept failing.
    """
    with UpdateFiles(runtime.settings.medline_updates) as client:
        return client.download(name, folder(runtime.settings))


def withdraw_deleted(runtime: Runtime, path: Path, run_id: str, now: datetime) -> Withdrawn:
    """Withdraw the decisions of the citations the file deletes."""
    return revisions.withdraw(runtime, deleted_citations(path), path.name, run_id, now)


def finish(runtime: Runtime, path: Path, now: datetime) -> str:
    """After every record of ``path`` is decided: the watermark moves to it; it is deleted."""
    settings = runtime.settings
    mark = _state(settings).advance(SOURCE, WATERMARK, path.name, now)
    if not settings.medline_updates.keep_processed:
        path.unlink(missing_ok=True)
    return mark


def watermark(settings: Settings) -> str | None:
    """The last update file processed, or None before the first."""
    return _state(settings).watermark(SOURCE, WATERMARK)
