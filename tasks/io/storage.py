"""Where the lake and the vectors live: under ``PHARMALANE_HOME`` or in an S3 bucket.

One setting decides (``PHARMALANE_LAKE_URI``, see ``tasks/io/object_store.py``); the services
get a ``LakeStore`` and a LanceDB location and never ask which.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lancedb

from tasks.io.lake import Lake, LakeStore
from tasks.io.object_lake import ObjectLake
from tasks.io.object_store import Bucket, S3Access, s3_access
from tasks.settings import Settings


@dataclass(frozen=True)
class LanceLocation:
    """A LanceDB database: a local folder, or a prefix in a bucket (``access``)."""

    uri: str
    access: S3Access | None = field(default=None, repr=False)

    @property
    def local(self) -> Path | None:
        return None if self.access is not None else Path(self.uri)

    def write_text(self, name: str, text: str) -> None:
        """A small file beside the tables, replaced whole: a rename on disk, one PUT on S3
        (an object is never seen half-written)."""
        if self.access is None:
            tmp = Path(self.uri) / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(Path(self.uri) / name)
            return
        Bucket(self.access).put(f"{self.access.prefix}/{name}".lstrip("/"), text.encode())

    def read_text(self, name: str) -> str | None:
        """The file ``name`` beside the tables, or None if there is none."""
        if self.access is None:
            path = Path(self.uri) / name
            return path.read_text(encoding="utf-8") if path.is_file() else None
        bucket = Bucket(self.access)
        key = f"{self.access.prefix}/{name}".lstrip("/")
        return bucket.get(key).decode() if key in bucket.keys(key) else None


def open_lake(settings: Settings) -> LakeStore:
    """The lake of ``settings``; an object-store lake's bucket is checked at once.

    Raises:
        ConfigError: the URI or keys are wrong (the message names the variable).
        BackendUnavailable: the object store cannot be reached.
    """
    access = s3_access(settings)
    if access is None:
        return Lake(settings.lake_dir)
    bucket = Bucket(access.child("lake"))
    bucket.check()
    # one local index folder per lake URI: two lakes never share key indexes
    tag = hashlib.sha256(bucket.access.uri.encode()).hexdigest()[:16]
    return ObjectLake(bucket, settings.lake_index_dir / tag)


def vectors_location(settings: Settings) -> LanceLocation:
    """Where LanceDB keeps the vectors of ``settings`` (raises as :func:`open_lake`)."""
    access = s3_access(settings)
    if access is None:
        return LanceLocation(str(settings.vectors_dir))
    vectors = access.child("vectors")
    return LanceLocation(vectors.uri, vectors)


def connect_lance(where: Path | LanceLocation, **options: Any) -> Any:
    """A LanceDB connection to a local folder (created if absent) or an S3 location.

    On S3, LanceDB commits a table version with a conditional put of its manifest, so it needs
    no rename and no external lock (the object store plays the part ``os.replace`` plays here).
    """
    if isinstance(where, LanceLocation) and where.local is None:
        assert where.access is not None
        return lancedb.connect(where.uri, storage_options=where.access.storage_options(), **options)
    folder = where if isinstance(where, Path) else Path(where.uri)
    folder.mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(folder), **options)
