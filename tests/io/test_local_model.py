"""Joining model parts: the result is used only when its sha256 matches."""

import hashlib

import pytest

from models.llm.local import (
    RuntimeNotInstalled,
    join_verified,
    llama_server,
    require_llama_cpp,
    sha256_file,
)


def parts(tmp_path):
    out = []
    for i, chunk in enumerate([b"GGUF", b"-part-two", b"-three"]):
        p = tmp_path / f"part{i}"
        p.write_bytes(chunk)
        out.append(p)
    return out


def test_parts_are_joined_in_order_and_checked(tmp_path):
    want = hashlib.sha256(b"GGUF-part-two-three").hexdigest()
    target = join_verified(parts(tmp_path), tmp_path / "m" / "model.gguf", want)
    assert target.read_bytes() == b"GGUF-part-two-three" and sha256_file(target) == want
    assert join_verified([], target, want) == target  # a verified file is reused


def test_a_wrong_hash_is_refused_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "m" / "model.gguf"
    with pytest.raises(ValueError, match="expected 0000"):
        join_verified(parts(tmp_path), target, "0000")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_the_llm_runtime_is_an_extra_whose_absence_names_it(tmp_path):
    require_llama_cpp()  # make test installs the extra
    with pytest.raises(RuntimeNotInstalled, match=r"pip install -e '\.\[llm\]'"):
        require_llama_cpp("llama_cpp_not_installed")


def test_a_server_without_the_runtime_fails_before_it_spawns(tmp_path, monkeypatch):
    import sys

    # this interpreter cannot import llama_cpp: a finder that refuses it, as an install without
    # the extra would
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            return None

    monkeypatch.setattr(sys, "meta_path", [Refuse()])
    with pytest.raises(RuntimeNotInstalled, match="llm"), llama_server(tmp_path / "m.gguf"):
        pass
