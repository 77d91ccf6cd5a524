"""Fetch NLM's daily update files (source ``medline-updates``) over HTTP(S), resumably.

Invariants:
- A file is downloaded into ``<name>.part`` (0600, in a 0700 folder under PHARMALANE_HOME); a
  cut transfer resumes with ``Range: bytes=<size of .part>-``; a server that ignores Range
  (HTTP 200) restarts the file from byte 0, so the bytes are never spliced from two answers.
- ``<name>`` exists only once its bytes match the md5 its ``.md5`` companion states *and* its
  gzip stream reads to the end: a wrong md5 or a truncated gzip is refused with an error naming
  the file, and its ``.part`` is removed so the next run downloads it afresh.
- 429, 5xx, timeouts and cut transfers are retried with backoff and full jitter, at most
  ``max_tries`` times per request; then ``BackendUnavailable``. Another 4xx is never retried.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from tasks.core.update_files import expected_md5, listed_files
from tasks.errors import BackendUnavailable, DataContractError
from tasks.io.private_files import PRIVATE_FILE, private_dir
from tasks.settings import MedlineUpdateSettings

T = TypeVar("T")
_PIECE = 1 << 20


class _Transient(Exception):
    """An answer worth another try (rate limited, server error)."""


class UpdateFiles:
    """The update-file folder at ``settings.base_url``: list, check, download.

    Args:
        settings: base URL, retry bounds, timeouts.
        rng: jitter source (seeded in tests).
        sleep: how backoff waits.
    """

    def __init__(
        self,
        settings: MedlineUpdateSettings,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.base = settings.base_url.rstrip("/") + "/"
        self._rng = rng or random.Random()  # noqa: S311  backoff jitter, not a secret
        self._sleep = sleep
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=True)

    def __enter__(self) -> UpdateFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def listing(self) -> list[str]:
        """Every update file the folder links to, in file order."""
        return listed_files(self._retried("listing", lambda: self._get_text(self.base)))

    def download(self, name: str, folder: Path) -> Path:
        """``folder/name``, downloaded (resuming a ``.part``), md5-checked and gzip-checked.

        Raises:
            DataContractError: the md5 does not match, the gzip stream is truncated, or the
                ``.md5`` companion is unreadable; the file names the error.
            BackendUnavailable: the server kept failing past ``max_tries``.
        """
        target = folder / name
        if target.is_file():
            return target  # checked when it was renamed into place
        private_dir(folder)
        md5_text = self._retried(f"{name}.md5", lambda: self._get_text(self.base + name + ".md5"))
        try:
            wanted = expected_md5(name, md5_text)
        except ValueError as exc:
            raise DataContractError(str(exc), record=name, field="md5") from None
        part = folder / f"{name}.part"
        self._retried(name, lambda: self._resume(name, part))
        _check_whole(part, name, wanted)
        part.replace(target)
        return target

    def _get_text(self, url: str) -> str:
        return _checked(self._http.get(url), url).text

    def _resume(self, name: str, part: Path) -> None:
        """Append the rest of ``name`` to ``part`` (Range from its size); restart on a 200."""
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        url = self.base + name
        with self._http.stream("GET", url, headers=headers) as response:
            if response.status_code == 416 and have:
                return  # the .part already holds every byte: the md5 check decides
            _checked(response, url)
            resumed = bool(have) and response.status_code == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(
                f"bytes {have}-"
            ):
                part.unlink()
                raise _Transient(f"asked for bytes {have}- and got another range: restarting")
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resumed else os.O_TRUNC)
            with os.fdopen(os.open(part, flags, PRIVATE_FILE), "ab" if resumed else "wb") as out:
                for piece in response.iter_bytes():  # as they arrive: a cut keeps them
                    out.write(piece)

    def _retried(self, what: str, call: Callable[[], T]) -> T:
        reason = ""
        for attempt in range(1, self.settings.max_tries + 1):
            try:
                return call()
            except _Transient as exc:
                reason = str(exc)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.settings.max_tries:
                ceiling = min(
                    self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
                )
                self._sleep(self._rng.uniform(0, ceiling))
        raise BackendUnavailable(
            f"MEDLINE update files: {what} failed {self.settings.max_tries} times (last: "
            f"{reason}); run again later: a partial download resumes where it stopped"
        )


def _checked(response: httpx.Response, url: str) -> httpx.Response:
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status}")
    if status >= 400:
        raise DataContractError(f"the update-file server answered HTTP {status}", record=url)
    return response


def _check_whole(part: Path, name: str, wanted: str) -> None:
    """Refuse ``part`` (and remove it) unless its md5 is ``wanted`` and its gzip reads whole."""
    digest = hashlib.md5(usedforsecurity=False)
    with part.open("rb") as handle:
        for piece in iter(lambda: handle.read(_PIECE), b""):
            digest.update(piece)
    if digest.hexdigest() != wanted:
        part.unlink()
        raise DataContractError(
            f"md5 mismatch: {name}.md5 states {wanted}, the download is {digest.hexdigest()}; "
            "the file is refused and will be downloaded again next run",
            record=name,
            field="md5",
        )
    try:
        with gzip.open(part, "rb") as stream:
            while stream.read(_PIECE):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        part.unlink()
        raise DataContractError(
            f"truncated or broken gzip ({exc}); the file is refused, nothing from it is screened",
            record=name,
            field="gzip",
        ) from None
