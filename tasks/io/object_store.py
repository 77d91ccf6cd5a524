"""An S3-compatible bucket: where the lake and the vectors live when one machine is not enough.

``PHARMALANE_LAKE_URI=s3://bucket/prefix`` puts the lake below ``prefix/lake`` and LanceDB below
``prefix/vectors``; the endpoint, region and keys come from ``PHARMALANE_S3_*`` environment
variables, never from a config file in git. Everything that must stay on one host (the lake's
key indexes, caches, keys, the audit trail) stays under ``PHARMALANE_HOME``.

An object store has no rename, so nothing here pretends to have one: ``Bucket.put`` with
``if_absent`` is S3's conditional put (``If-None-Match: *``), the one atomic step the lake's
write-then-commit needs (see ``tasks/io/object_lake.py``). Parquet goes through pyarrow's own
S3 filesystem (``arrow_fs``) so DuckDB scans it as Arrow datasets, and LanceDB gets the same
endpoint and keys as its ``storage_options``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import boto3
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tasks.errors import BackendUnavailable, ConfigError
from tasks.settings import Settings

_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[^\s]*))?")
_KEY_ID = re.compile(r"[A-Za-z0-9_+/=.-]{1,128}")
_ENDPOINT = re.compile(r"https?://[^\s/]+(:\d+)?/?")


@dataclass(frozen=True)
class S3Access:
    """A bucket, a key prefix in it, and how to reach it (the keys never appear in a repr)."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"S3Access(s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def child(self, name: str) -> S3Access:
        """The same bucket and keys, one level below this prefix."""
        prefix = f"{self.prefix.rstrip('/')}/{name}".lstrip("/")
        return S3Access(self.bucket, prefix, self.endpoint, self.region, self.key_id, self.secret)

    def arrow_fs(self) -> pafs.S3FileSystem:
        """pyarrow's S3 filesystem (paths are ``bucket/key``)."""
        scheme = "http" if (self.endpoint or "").startswith("http://") else "https"
        host = _host(self.endpoint) if self.endpoint else None
        return pafs.S3FileSystem(
            access_key=self.key_id,
            secret_key=self.secret,
            region=self.region,
            endpoint_override=host,
            scheme=scheme,
        )

    def storage_options(self) -> dict[str, str]:
        """LanceDB's ``storage_options`` for this bucket."""
        options = {
            "aws_access_key_id": self.key_id,
            "aws_secret_access_key": self.secret,
            "region": self.region,
        }
        if self.endpoint:
            options["endpoint"] = self.endpoint.rstrip("/")
            options["allow_http"] = str(self.endpoint.startswith("http://")).lower()
        return options


def s3_access(settings: Settings) -> S3Access | None:
    """The bucket of ``settings.lake_uri``, or None for a lake under ``home``.

    Raises:
        ConfigError: the URI, endpoint or keys are missing or malformed; the message names the
            environment variable to fix.
    """
    if settings.lake_uri is None:
        return None
    found = _URI.fullmatch(settings.lake_uri.strip())
    if found is None:
        raise ConfigError(
            f"PHARMALANE_LAKE_URI={settings.lake_uri!r} is not s3://bucket/prefix (a bucket "
            "name of 3-63 lowercase letters, digits, dots or dashes)"
        )
    if settings.s3_endpoint is not None and not _ENDPOINT.fullmatch(settings.s3_endpoint):
        raise ConfigError(
            f"PHARMALANE_S3_ENDPOINT={settings.s3_endpoint!r} is not http(s)://host[:port]"
        )
    key_id = _secret(settings.s3_access_key_id)
    secret = _secret(settings.s3_secret_access_key)
    if not key_id or not _KEY_ID.fullmatch(key_id):
        raise ConfigError(
            "PHARMALANE_S3_ACCESS_KEY_ID is missing or malformed: an s3:// PHARMALANE_LAKE_URI "
            "needs the bucket's access key id in the environment"
        )
    if not secret or secret != secret.strip():
        raise ConfigError(
            "PHARMALANE_S3_SECRET_ACCESS_KEY is missing or malformed (empty, or blank at an end):"
            " an s3:// PHARMALANE_LAKE_URI needs the bucket's secret key in the environment"
        )
    prefix = (found.group("prefix") or "").strip("/")
    return S3Access(
        found.group("bucket"), prefix, settings.s3_endpoint, settings.s3_region, key_id, secret
    )


def _secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def _host(endpoint: str) -> str:
    return endpoint.split("://", 1)[1].rstrip("/")


class Bucket:
    """The few object operations the lake needs, each one request to the server."""

    def __init__(self, access: S3Access):
        self.access = access
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=access.endpoint,
            region_name=access.region,
            aws_access_key_id=access.key_id,
            aws_secret_access_key=access.secret,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def check(self) -> None:
        """Fail now, with the setting to fix, when the bucket cannot be used.

        Raises:
            ConfigError: no such bucket, or the keys are refused.
            BackendUnavailable: the server cannot be reached.
        """
        try:
            self._client.head_bucket(Bucket=self.access.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket"}:
                raise ConfigError(
                    f"PHARMALANE_LAKE_URI: bucket {self.access.bucket!r} does not exist"
                ) from exc
            raise ConfigError(
                f"bucket {self.access.bucket!r} refused the keys ({code}): check "
                "PHARMALANE_S3_ACCESS_KEY_ID and PHARMALANE_S3_SECRET_ACCESS_KEY"
            ) from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(
                f"object store at {self.access.endpoint or 'AWS S3'} unreachable ({exc}): "
                "check PHARMALANE_S3_ENDPOINT"
            ) from exc

    def put(self, key: str, body: bytes, *, if_absent: bool = False) -> bool:
        """Store ``body`` at ``key``; with ``if_absent``, only if no object is there yet.

        Returns:
            False when ``if_absent`` and another writer's object already holds the key.
        """
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self._client.put_object(Bucket=self.access.bucket, Key=key, Body=body, **extra)
        except ClientError as exc:
            if if_absent and exc.response.get("Error", {}).get("Code") in {
                "PreconditionFailed",
                "ConditionalRequestConflict",
            }:
                return False
            raise
        return True

    def get(self, key: str) -> bytes:
        answer = self._client.get_object(Bucket=self.access.bucket, Key=key)
        return bytes(answer["Body"].read())

    def keys(self, prefix: str, *, after: str = "") -> list[str]:
        """Every key below ``prefix`` (only those after ``after``), in lexical order."""
        found: list[str] = []
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.access.bucket, Prefix=prefix, StartAfter=after):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._client.delete_objects(Bucket=self.access.bucket, Delete={"Objects": batch})
