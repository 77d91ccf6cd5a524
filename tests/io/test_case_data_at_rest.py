"""Case data at rest: sealed in the real SQLite store, owner-only files, key rotation, lost keys.

Each test reproduces a known attack: reading narratives out of cases.sqlite (or its
WAL) with `strings`, reading the file as another local user, and losing or rotating the key.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tasks.errors import ConfigError, DataContractError
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.sealing import KEYS_ENV, Sealer, dev_key, key_id, parse_keys, sealer_for
from tasks.io.triage_store import TriageStore
from tasks.settings import load_settings

NARRATIVE = "Patient Quetzalia Brightwater collapsed after the second infusion of Xanomeline"
KEY_A, KEY_B, KEY_C = (Fernet.generate_key() for _ in range(3))
REPO = Path(__file__).resolve().parents[2]


def case(case_id: str, narrative: str = NARRATIVE) -> IcsrCase:
    return IcsrCase.model_validate(
        {
            "case_id": case_id,
            "received_at": "2026-03-02T09:00:00+00:00",
            "patient": {"initials": "QZB", "age_years": 61, "sex": "F"},
            "suspect_drugs": ["Xanomeline"],
            "narrative": narrative,
        }
    )


def decision(case_id: str) -> TriageDecision:
    return TriageDecision(
        case_id=case_id, status="held_for_review", lane="hot", valid=True, missing=[],
        seriousness=[], serious=False, severity=None, narrative_flags=[], narrative_score=None,
        duplicate_of=None, clock_days=15, day_zero=date(2026, 3, 2), due_date=date(2026, 3, 17),
        requires_review=True, reasons=["TEST"], model=None, input_tokens=0, cost_usd=0.0,
        decided_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
    )  # fmt: skip


def store_with(path: Path, *keys: bytes) -> TriageStore:
    return TriageStore(path, Sealer(list(keys)))


def put(store: TriageStore, case_id: str, narrative: str = NARRATIVE) -> None:
    store.accept(case(case_id, narrative), f"fp-{case_id}", decision(case_id), submitter="k-sub")


def file_bytes(db: Path) -> bytes:
    """The database and its -wal/-shm, as a reader of the disk would see them."""
    return b"".join(
        p.read_bytes()
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
        if p.exists()
    )


@contextmanager
def wal_kept(db: Path) -> Iterator[None]:
    """Another reader holds the database open, so the -wal/-shm files stay on disk as in
    production (the API and the lane), instead of being removed when the store closes."""
    holder = sqlite3.connect(db)
    try:
        holder.execute("SELECT count(*) FROM cases").fetchone()
        yield
    finally:
        holder.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the sealer -------------------------------------------------------------------------------


def test_a_sealed_value_names_its_key_and_hides_the_text():
    sealer = Sealer([KEY_A])
    sealed = sealer.seal(NARRATIVE.encode())
    assert sealed.startswith(f"pl1:{key_id(KEY_A)}:".encode())
    assert b"Quetzalia" not in sealed and sealer.seal(NARRATIVE.encode()) != sealed
    assert sealer.open(sealed) == NARRATIVE.encode()


def test_a_value_sealed_with_a_key_not_configured_is_a_config_error_naming_the_variable():
    sealed = Sealer([KEY_A]).seal(b"x")
    with pytest.raises(ConfigError, match=f"{key_id(KEY_A)}.*not in {KEYS_ENV}"):
        Sealer([KEY_C]).open(sealed, record="C-1")


def test_a_tampered_or_unsealed_value_is_refused_never_returned():
    sealer = Sealer([KEY_A])
    sealed = bytearray(sealer.seal(b"secret"))
    sealed[-5] ^= 1
    with pytest.raises(DataContractError, match="does not authenticate"):
        sealer.open(bytes(sealed), record="C-1")
    with pytest.raises(DataContractError, match="not sealed"):
        sealer.open(b'{"narrative": "in the clear"}', record="C-1")


@pytest.mark.parametrize(
    "text",
    ["", " , ", "not-a-key", f"{KEY_A.decode()},short"],
    ids=["empty", "commas", "not-a-key", "good-then-short"],  # KEY_A is random: not in an id
)
def test_malformed_key_lists_are_config_errors(text):
    with pytest.raises(ConfigError, match=KEYS_ENV):
        parse_keys(text)


def test_outside_dev_a_missing_key_refuses_to_start(tmp_path):
    settings = load_settings(home=tmp_path, env="prod")
    with pytest.raises(ConfigError, match=f"{KEYS_ENV} is not set"):
        sealer_for(settings)
    assert not (tmp_path / "keys").exists()


def test_configured_keys_win_and_seal_with_the_first(tmp_path):
    keys = SecretStr(f"{KEY_B.decode()}, {KEY_A.decode()}")
    sealer = sealer_for(load_settings(home=tmp_path, env="prod", data_keys=keys))
    assert sealer.primary_id == key_id(KEY_B) and sealer.key_ids == [key_id(KEY_B), key_id(KEY_A)]


def test_dev_without_a_key_generates_one_private_key_per_home(tmp_path):
    settings = load_settings(home=tmp_path / "home", env="dev")
    first = sealer_for(settings)
    key_file = settings.keys_dir / "dev-data.key"
    assert mode(key_file) == 0o600 and mode(settings.keys_dir) == 0o700
    assert sealer_for(settings).primary_id == first.primary_id  # stable across calls


def test_concurrent_first_use_of_the_dev_key_agrees_on_one_key(tmp_path):
    path = tmp_path / "keys" / "dev-data.key"
    code = (
        "import sys, pathlib; from tasks.io.sealing import dev_key; "
        "print(dev_key(pathlib.Path(sys.argv[1])).decode())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
            env=os.environ | {"PYTHONPATH": str(REPO)},
        )
        for _ in range(4)
    ]  # fmt: skip
    keys = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert keys == {dev_key(path).decode()} and all(p.returncode == 0 for p in procs)
    assert [p.name for p in path.parent.iterdir()] == ["dev-data.key"]  # no temp file left


# --- the store --------------------------------------------------------------------------------


def test_the_store_file_and_its_wal_hold_no_narrative_or_patient_field(tmp_path):
    db = tmp_path / "triage" / "cases.sqlite"
    store = store_with(db, KEY_A)
    with wal_kept(db):
        put(store, "C-1")
        on_disk = file_bytes(db)
        assert len(on_disk) > db.stat().st_size  # the WAL is read too, not only the main file
    for secret in (b"Quetzalia", b"Brightwater", b"infusion", b"QZB"):
        assert secret not in on_disk
    stored = store.get("C-1")
    assert stored is not None and stored.case == case("C-1")


def test_store_files_and_folder_are_created_owner_only(tmp_path):
    previous = os.umask(0o022)  # the usual umask: files would be world-readable
    try:
        db = tmp_path / "home" / "triage" / "cases.sqlite"
        store = store_with(db, KEY_A)
        with wal_kept(db):
            put(store, "C-1")
            modes = {p.name: mode(p) for p in db.parent.iterdir()}
    finally:
        os.umask(previous)
    assert mode(db.parent) == 0o700
    assert modes == {"cases.sqlite": 0o600, "cases.sqlite-wal": 0o600, "cases.sqlite-shm": 0o600}


def test_an_existing_world_readable_store_is_narrowed_when_opened(tmp_path):
    db = tmp_path / "triage" / "cases.sqlite"
    put(store_with(db, KEY_A), "C-1")
    db.parent.chmod(0o755)
    db.chmod(0o644)
    store_with(db, KEY_A)
    assert (mode(db.parent), mode(db)) == (0o700, 0o600)


def test_rotation_new_key_first_then_reseal_then_the_old_key_opens_nothing(tmp_path):
    db = tmp_path / "cases.sqlite"
    put(store_with(db, KEY_A), "C-1")
    put(store_with(db, KEY_A), "C-2")

    rotated = store_with(db, KEY_B, KEY_A)
    assert rotated.get("C-1") is not None  # old rows still read during the rotation window
    put(rotated, "C-3")  # new rows are sealed with the new key already
    result = rotated.reseal()
    assert (result.resealed, result.already_current) == (2, 1)
    assert rotated.reseal().resealed == 0  # idempotent

    assert f"pl1:{key_id(KEY_A)}:".encode() not in file_bytes(db)  # vacuumed: no old copies
    with pytest.raises(ConfigError, match=f"{key_id(KEY_B)}.*not in {KEYS_ENV}"):
        store_with(db, KEY_A)
    only_b = store_with(db, KEY_B)
    assert [only_b.get(c).case.case_id for c in ("C-1", "C-2", "C-3")] == ["C-1", "C-2", "C-3"]


def test_a_wrong_key_fails_at_open_and_writes_nothing(tmp_path):
    db = tmp_path / "cases.sqlite"
    put(store_with(db, KEY_A), "C-1")
    with pytest.raises(ConfigError, match=KEYS_ENV):
        store_with(db, KEY_C)
    assert store_with(db, KEY_A).count() == 1


def test_reseal_seals_rows_stored_in_the_clear_before_encryption_at_rest(tmp_path):
    db = tmp_path / "cases.sqlite"
    store = store_with(db, KEY_A)
    put(store, "OLD-1")
    with sqlite3.connect(db) as con:  # as the store wrote payloads before this change
        con.execute(
            "UPDATE cases SET payload = ? WHERE case_id = 'OLD-1'",
            (case("OLD-1").model_dump_json(),),
        )
    con.close()
    with pytest.raises(DataContractError, match="rotate-key"):
        store.get("OLD-1")  # refused, not served as if it were protected
    assert store.reseal().resealed == 1
    assert b"Quetzalia" not in file_bytes(db)  # secure_delete + vacuum left no clear copy
    stored = store.get("OLD-1")
    assert stored is not None and stored.case.narrative == NARRATIVE
