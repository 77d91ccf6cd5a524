"""Where flow path parameters may point, and when the intake may listen without TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import DataContractError
from tasks.policy.paths import confine, inside
from tasks.policy.transport import is_loopback, plain_http_refusal


def test_inside_is_path_aware_not_a_string_prefix():
    root = Path("/srv/pharmalane")
    assert inside(root, [root]) and inside(root / "a" / "b.xml", [root])
    assert not inside(Path("/srv/pharmalane-other/x"), [root])
    assert not inside(Path("/srv"), [root])


def test_confine_resolves_dotdot_before_checking(tmp_path):
    home = tmp_path / "home"
    assert confine("out_dir", [home / "reports"], [home]) == [home.resolve() / "reports"]
    with pytest.raises(DataContractError) as caught:
        confine("out_dir", [f"{home}/../../etc"], [home])
    assert caught.value.field == "out_dir"
    assert "outside the allowed folders" in str(caught.value)


def test_confine_follows_a_symlink_that_leads_out_of_a_root(tmp_path):
    home, outside = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    outside.mkdir()
    (home / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DataContractError) as caught:
        confine("sources", [home / "escape" / "feed.xml"], [home])
    assert caught.value.field == "sources"


def test_confine_checks_every_path_and_names_the_parameter(tmp_path):
    with pytest.raises(DataContractError, match="field sources: /etc/passwd"):
        confine("sources", [tmp_path / "ok.xml", "/etc/passwd"], [tmp_path])


def test_a_relative_root_is_resolved_like_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert confine("sources", ["data/feed.xml"], [Path("data")]) == [
        tmp_path.resolve() / "data" / "feed.xml"
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "intake.example.org", "", "localhost."]
)
def test_anything_else_is_not_loopback(host):
    assert not is_loopback(host)


def test_plain_http_off_loopback_is_refused_unless_explicitly_accepted():
    refusal = plain_http_refusal("0.0.0.0", cert=False, key=False, insecure_no_tls=False)
    assert refusal is not None and "--insecure-no-tls" in refusal and "--tls-cert" in refusal
    assert plain_http_refusal("0.0.0.0", cert=False, key=False, insecure_no_tls=True) is None
    assert plain_http_refusal("0.0.0.0", cert=True, key=True, insecure_no_tls=False) is None
    assert plain_http_refusal("127.0.0.1", cert=False, key=False, insecure_no_tls=False) is None


def test_half_a_tls_configuration_is_refused_even_on_loopback():
    assert plain_http_refusal("127.0.0.1", cert=True, key=False, insecure_no_tls=False)
    assert plain_http_refusal("0.0.0.0", cert=False, key=True, insecure_no_tls=True)
