"""Bad input gets a clear 4xx naming the field: never a 500, never the value in an answer or log.

Each test replays one known attack against the real app over a real store; the last ones
against the same app under a real uvicorn on loopback, whose loggers are captured too.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from flows.triage_app import create_app
from tasks.errors import DataContractError
from tests.triage_app import HEADERS, REV, A, build, client, report, served

SECRET = "Zebulon Quartzfield"  # a patient detail no answer or log line may repeat
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def api(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    return client(tmp_path / "home")


def post(client_, body: bytes | str, headers=None):
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return client_.post("/cases", content=raw, headers=(A if headers is None else headers) | JSON)


def assert_refused(response, status, caplog, triager, *, loc=None):
    assert response.status_code == status, response.text
    assert SECRET not in response.text and SECRET not in caplog.text
    assert triager.store.count() == 0
    if loc is not None:
        errors = response.json()["detail"]
        assert loc in [e["loc"] for e in errors]
        assert all(set(e) == {"loc", "type", "msg"} for e in errors)  # no input, no ctx


@pytest.mark.parametrize(
    "received_at",
    [
        "9999-12-31T00:00:00+00:00",  # OverflowError -> 500 before
        "0001-01-01T00:00:00+00:00",  # OverflowError -> 500 before
        "9999-12-31T23:00:00-05:00",  # past year 9999 in UTC
        "2099-01-01T00:00:00+00:00",  # accepted with an absurd due date before
        "1900-01-01T00:00:00+00:00",
        "1989-12-31T23:59:59+00:00",
    ],
)
def test_an_implausible_receipt_date_is_422_naming_received_at(api, caplog, received_at):
    client_, triager = api
    body = json.dumps(report(received_at=received_at, narrative=SECRET))
    assert_refused(post(client_, body), 422, caplog, triager, loc=["body", "received_at"])


def test_receipt_window_ends_one_day_from_now(api, caplog):
    client_, triager = api
    now = datetime.now(UTC)
    late = report("W-1", received_at=(now + timedelta(days=2)).isoformat(), narrative=SECRET)
    assert_refused(post(client_, json.dumps(late)), 422, caplog, triager)
    fine = report("W-2", received_at=(now + timedelta(hours=12)).isoformat())
    assert post(client_, json.dumps(fine)).status_code == 200


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    ("where", "loc"),
    [
        ("age", ["body", "patient", "age_years"]),
        ("grade", ["body", "reactions", 0, "severity_grade"]),
    ],
)
def test_non_finite_numbers_are_422_naming_the_field(api, caplog, number, where, loc):
    client_, triager = api
    body = report(
        patient={"initials": "ZQ", "age_years": "@age@", "sex": "F"},
        reactions=[{"term": SECRET, "severity_grade": "@grade@"}],
    )
    raw = json.dumps(body).replace(f'"@{where}@"', number)
    raw = raw.replace('"@age@"', "40").replace('"@grade@"', "1")
    assert_refused(post(client_, raw), 422, caplog, triager, loc=loc)


@pytest.mark.parametrize(
    "fields",
    [
        {"narrative": SECRET + "\ud800"},
        {"patient": {"initials": "\udc00Z"}},
        {"suspect_drugs": [SECRET + "\ud83d"]},
        {"reactions": [{"term": SECRET + "\udfff"}]},
    ],
)
def test_a_lone_surrogate_is_422_never_500(api, caplog, fields):
    client_, triager = api
    raw = json.dumps(report(**fields))  # ensure_ascii: the surrogate travels as \\udXXX
    response = post(client_, raw)
    assert_refused(response, 422, caplog, triager)
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (json.dumps(report(narrative=SECRET)).encode("utf-16"), 400),  # with its BOM
        (json.dumps(report(narrative=SECRET)).encode("utf-16-le"), 400),  # NUL bytes
        (b"\xef\xbb\xbf" + json.dumps(report(narrative=SECRET)).encode(), 400),  # UTF-8 BOM
        (json.dumps(report(narrative="x")).encode()[:-2] + b'\xed\xa0\x80"}', 400),
        (json.dumps(report(narrative=SECRET)).encode("latin-1")[:-3] + b'\xe9"}', 400),
    ],
)
def test_a_body_that_is_not_utf8_is_refused_with_a_clear_message(api, caplog, body, status):
    client_, triager = api
    response = post(client_, body)
    assert_refused(response, status, caplog, triager)
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json; charset=utf-16", "application/x-www-form-urlencoded", ""],
)
def test_a_body_not_declared_as_utf8_json_is_415(api, caplog, content_type):
    client_, triager = api
    body = json.dumps(report(narrative=SECRET)).encode()
    response = client_.post("/cases", content=body, headers=A | {"Content-Type": content_type})
    assert_refused(response, 415, caplog, triager)
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-API-Key": "key-nobody"}, 401), (HEADERS["old"], 401), (REV, 403)],
)
@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe{", b'{"case_id": ".."}'])
def test_the_key_is_checked_before_the_body_is_read(api, caplog, headers, status, body):
    client_, triager = api
    assert_refused(post(client_, body, headers=headers), status, caplog, triager)


def test_the_key_is_checked_before_a_review_body_is_read(api):
    client_, _ = api
    response = client_.post("/reviews/C-1", content=b"{not json", headers=JSON)
    assert response.status_code == 401


def test_a_chunked_body_above_the_limit_is_413(api, caplog):
    client_, triager = api

    def chunks():
        for _ in range(10):
            yield (SECRET * 500).encode()  # 10 x 9.5 kB, no Content-Length

    response = client_.post("/cases", content=chunks(), headers=A | JSON)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_refused(response, 413, caplog, triager)


@pytest.mark.parametrize(("fields", "loc"), [
    ({"suspect_drugs": ["X" * 60_000]}, ["body", "suspect_drugs", 0]),
    ({"suspect_drugs": ["X" * 201]}, ["body", "suspect_drugs", 0]),
    ({"reactions": [{"term": " "}]}, ["body", "reactions", 0, "term"]),
    ({"reactions": [{"term": "X" * 201}]}, ["body", "reactions", 0, "term"]),
    ({"patient": {"initials": "X" * 11}}, ["body", "patient", "initials"]),
    ({"narrative": "X" * 20_001}, ["body", "narrative"]),
])  # fmt: skip
def test_every_string_is_bounded(api, caplog, fields, loc):
    client_, triager = api
    assert_refused(post(client_, json.dumps(report(**fields))), 422, caplog, triager, loc=loc)


@pytest.mark.parametrize(
    "case_id", ["..", ".", "...", ".C-1", " C-1", "C-1 ", "\tC-1", "C-1\n", "C 1", "", "C/1"]
)
def test_a_case_id_of_dots_or_with_stray_whitespace_is_refused(api, caplog, case_id):
    client_, triager = api
    body = json.dumps(report(case_id, narrative=SECRET))
    assert_refused(post(client_, body), 422, caplog, triager, loc=["body", "case_id"])


def test_a_validation_error_never_echoes_the_value(api, caplog):
    client_, triager = api
    body = report(patient={"initials": SECRET, "sex": SECRET}, reporter={"qualification": SECRET})
    response = post(client_, json.dumps(body))
    assert_refused(response, 422, caplog, triager)
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
        ("body", "patient", "initials"),
        ("body", "patient", "sex"),
        ("body", "reporter", "qualification"),
    }


@pytest.mark.parametrize("reason", ["     ", "\t \n ", " a  b ", ""])
def test_a_review_reason_of_spaces_is_422_not_404(api, reason):
    client_, triager = api
    client_.post("/cases", json=report(outcome={"death": True}), headers=A)
    response = client_.post(
        "/reviews/C-1", json={"verdict": "accept", "reason": reason}, headers=REV
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "reason"]
    assert triager.store.get("C-1").decision.status == "held_for_review"
    with pytest.raises(DataContractError, match="reason"):  # the CLI's path, the store itself
        triager.store.review(
            "C-1", verdict="accepted", reviewer="k-rev", reason=reason, at=datetime.now(UTC)
        )


def test_bad_input_over_a_real_server_is_4xx_and_no_log_line_holds_case_text(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    triager, settings = build(tmp_path / "home")
    headers = A | JSON
    attacks = {
        "nan": json.dumps(report(narrative=SECRET)).replace('"age_years": 54', '"age_years": NaN'),
        "surrogate": json.dumps(report(narrative=SECRET + "\ud800")),
        "year 9999": json.dumps(report(received_at="9999-12-31T00:00:00Z", narrative=SECRET)),
        "year 1": json.dumps(report(received_at="0001-01-01T00:00:00Z", narrative=SECRET)),
        "long drug": json.dumps(report(suspect_drugs=[SECRET * 3000])),
    }

    def chunked():
        for _ in range(20):
            yield (SECRET * 500).encode()

    with served(create_app(settings, triager)) as url:
        answers = {
            name: httpx.post(f"{url}/cases", content=body.encode(), headers=headers, timeout=30)
            for name, body in attacks.items()
        }
        answers["chunked"] = httpx.post(
            f"{url}/cases", content=chunked(), headers=headers, timeout=30
        )
        answers["utf-16"] = httpx.post(
            f"{url}/cases", content=attacks["nan"].encode("utf-16"), headers=headers, timeout=30
        )
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "nan": 422, "surrogate": 422, "year 9999": 422, "year 1": 422, "long drug": 422,
        "chunked": 413, "utf-16": 400,
    }  # fmt: skip
    assert not any(SECRET in r.text for r in answers.values())
    assert SECRET not in caplog.text
    assert triager.store.count() == 0
