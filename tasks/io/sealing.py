"""Encryption at rest of case data (narratives, patient fields) with keys from the environment.

Invariant: case data is written sealed or not at all. A sealed value is
``pl1:<key id>:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from ``cryptography``); the key id
is the first 8 hex digits of sha256(key), so a value names the key that can open it and a
missing key is reported as such, never as corrupt data. There is no plaintext fallback: with no
key, a wrong key or a tampered value, ``seal``/``open`` raise.

Keys: ``PHARMALANE_DATA_KEYS`` holds comma-separated Fernet keys, newest first. Values are
sealed with the first; any listed key opens. Rotation: put the new key first (``NEW,OLD``),
reseal every stored value (``pharmalane triage rotate-key``), then drop the old key.

With no key set and ``env: dev`` only, a per-home dev key is generated once in
``PHARMALANE_HOME/keys/dev-data.key`` (0600) so a fresh checkout runs without setup. That key
lies beside the data it protects: it guards against a copied database file, nothing more. Any
other environment refuses to start without ``PHARMALANE_DATA_KEYS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from tasks.errors import ConfigError, DataContractError
from tasks.io.private_files import write_private_once
from tasks.settings import Settings

PREFIX = b"pl1:"
KEYS_ENV = "PHARMALANE_DATA_KEYS"
DEV_KEY_FILE = "dev-data.key"
_ID_LEN = 8


def key_id(key: bytes) -> str:
    """A short public name of a key: enough to tell keys apart, useless to recover one."""
    return hashlib.sha256(key.strip()).hexdigest()[:_ID_LEN]


def parse_keys(text: str) -> list[bytes]:
    """Comma-separated Fernet keys, newest first.

    Raises:
        ConfigError: no key, or one that is not a Fernet key (32 url-safe base64 bytes).
    """
    keys = [part.strip().encode("ascii", "replace") for part in text.split(",") if part.strip()]
    if not keys:
        raise ConfigError(f"{KEYS_ENV} is empty: set it to one or more Fernet keys, newest first")
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError as exc:
            raise ConfigError(
                f"{KEYS_ENV}: key #{index + 1} is not a Fernet key (generate one with "
                "`pharmalane triage new-key`)"
            ) from exc
    return keys


class Sealer:
    """Seals with the newest key, opens with any configured key."""

    def __init__(self, keys: Sequence[bytes]):
        if not keys:
            raise ConfigError(f"no data key: set {KEYS_ENV}")
        self._fernets = {key_id(k): Fernet(k) for k in keys}
        self.primary_id = key_id(keys[0])

    @property
    def key_ids(self) -> list[str]:
        return list(self._fernets)

    def seal(self, plaintext: bytes) -> bytes:
        token = self._fernets[self.primary_id].encrypt(plaintext)
        return PREFIX + self.primary_id.encode("ascii") + b":" + token

    def open(self, sealed: bytes, *, record: str | None = None) -> bytes:
        """The plaintext of a sealed value.

        Raises:
            ConfigError: the value was sealed with a key that is not configured.
            DataContractError: the value is not sealed (plaintext) or does not authenticate.
        """
        kid, token = self._split(sealed, record)
        fernet = self._fernets.get(kid)
        if fernet is None:
            raise ConfigError(
                f"{'record ' + record + ': ' if record else ''}sealed with data key {kid}, "
                f"which is not in {KEYS_ENV} (configured: {', '.join(self.key_ids)}): "
                "add the key that sealed it"
            )
        try:
            return fernet.decrypt(token)
        except InvalidToken as exc:
            raise DataContractError(
                f"sealed value does not authenticate under key {kid}: corrupted or tampered",
                record=record,
                field="sealed",
            ) from exc

    def sealed_with(self, sealed: bytes) -> str | None:
        """The key id a value names, or None for a value that is not sealed."""
        if not sealed.startswith(PREFIX):
            return None
        return sealed[len(PREFIX) : len(PREFIX) + _ID_LEN].decode("ascii", "replace")

    def _split(self, sealed: bytes, record: str | None) -> tuple[str, bytes]:
        kid = self.sealed_with(sealed)
        if kid is None or sealed[len(PREFIX) + _ID_LEN : len(PREFIX) + _ID_LEN + 1] != b":":
            raise DataContractError(
                "value is not sealed (stored in the clear before encryption at rest?): "
                "run `pharmalane triage rotate-key` to seal it",
                record=record,
                field="sealed",
            )
        return kid, sealed[len(PREFIX) + _ID_LEN + 1 :]


def new_key() -> str:
    """A fresh random Fernet key (for ``PHARMALANE_DATA_KEYS``)."""
    return Fernet.generate_key().decode("ascii")


def sealer_for(settings: Settings) -> Sealer:
    """The sealer of this environment: ``PHARMALANE_DATA_KEYS``, or the dev key in dev only.

    Raises:
        ConfigError: no key outside ``env: dev``, or a malformed key.
    """
    if settings.data_keys is not None:
        return Sealer(parse_keys(settings.data_keys.get_secret_value()))
    if settings.env != "dev":
        raise ConfigError(
            f"{KEYS_ENV} is not set: case data is encrypted at rest and env {settings.env!r} "
            "has no dev key. Set it to a Fernet key (`pharmalane triage new-key`), newest first"
        )
    return Sealer([dev_key(settings.keys_dir / DEV_KEY_FILE)])


def dev_key(path: Path) -> bytes:
    """This home's dev key, generated (0600) on first use; the same for every process."""
    if path.is_file():
        return parse_keys(path.read_text(encoding="ascii"))[0]
    return write_private_once(path, new_key().encode("ascii")).strip()
