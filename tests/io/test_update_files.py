"""Downloading NLM update files from a loopback server: resume, restart, md5 and gzip refusal."""

from __future__ import annotations

import gzip
import random
import stat

import pytest

from tasks.errors import DataContractError
from tasks.io.update_files import UpdateFiles
from tasks.settings import MedlineUpdateSettings
from tests.conftest import real_medline_records
from tests.ncbi_server import Fault, ncbi_server, update_files_url

NAME = "pubmed25n0101.xml.gz"


@pytest.fixture
def served():
    with ncbi_server() as (url, state):
        data = state.add_update_file(NAME, real_medline_records(300), deleted=("1", "2"))
        state.add_update_file("pubmed25n0102.xml.gz", real_medline_records(5))
        settings = MedlineUpdateSettings(
            base_url=update_files_url(url), backoff_base_s=0.0, max_tries=3
        )
        with UpdateFiles(settings, rng=random.Random(7)) as client:
            yield client, state, data


def test_listing_and_a_whole_download_kept_private(served, tmp_path):
    client, _, data = served
    assert client.listing() == [NAME, "pubmed25n0102.xml.gz"]

    path = client.download(NAME, tmp_path / "updates")

    assert path.read_bytes() == data and gzip.decompress(path.read_bytes()).endswith(
        b"</PubmedArticleSet>\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not (tmp_path / "updates" / f"{NAME}.part").exists()


def test_a_transfer_cut_mid_file_resumes_with_a_range_request(served, tmp_path):
    client, state, data = served
    state.faults.append(Fault("cut-connection", endpoint=NAME))

    path = client.download(NAME, tmp_path)

    assert path.read_bytes() == data
    gets = [r.form["range"] for r in state.requests if r.endpoint == NAME]
    assert gets[0] == "" and len(gets) == 2
    resumed_at = int(gets[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at < len(data)  # only the missing tail was fetched again
    assert state.bytes_sent[NAME] == len(data)


def test_a_server_that_ignores_range_makes_the_download_start_over(served, tmp_path):
    client, state, data = served
    (tmp_path / f"{NAME}.part").write_bytes(data[:1000] + b"garbage")  # a stale partial file
    state.faults.append(Fault("ignore-range", endpoint=NAME))

    path = client.download(NAME, tmp_path)

    assert path.read_bytes() == data  # nothing of the stale .part was kept
    assert [r.form["range"] for r in state.requests if r.endpoint == NAME] == ["bytes=1007-"]


def test_a_wrong_md5_is_refused_with_the_file_named_and_nothing_kept(served, tmp_path):
    client, state, _ = served
    state.spoil_md5(NAME)

    with pytest.raises(DataContractError, match="md5 mismatch") as refused:
        client.download(NAME, tmp_path)

    assert refused.value.record == NAME
    assert list(tmp_path.iterdir()) == []  # no file, no .part: the next run starts afresh


def test_a_truncated_gzip_is_refused_even_when_its_md5_matches(served, tmp_path):
    client, state, _ = served
    state.truncate_gzip(NAME)

    with pytest.raises(DataContractError, match="truncated or broken gzip") as refused:
        client.download(NAME, tmp_path)

    assert refused.value.record == NAME and list(tmp_path.iterdir()) == []


def test_server_errors_are_retried_then_reported(served, tmp_path):
    from tasks.errors import BackendUnavailable

    client, state, data = served
    state.faults.append(Fault("status", status=503, endpoint=NAME))
    assert client.download(NAME, tmp_path).read_bytes() == data

    state.faults.extend(Fault("status", status=500, endpoint="listing") for _ in range(3))
    with pytest.raises(BackendUnavailable, match="listing failed 3 times"):
        client.listing()


def test_deleted_citations_are_read_streaming_even_across_read_boundaries(tmp_path):
    from tasks.io.medline import deleted_citations, iter_medline
    from tests.ncbi_server import update_file_bytes

    records = real_medline_records(20)
    path = tmp_path / NAME
    path.write_bytes(update_file_bytes(records, deleted=("111", "222", "333")))

    for read_bytes in (7, 1000, 1 << 20):  # tiny reads cut <DeleteCitation> anywhere
        assert deleted_citations(path, read_bytes) == [("111", "1"), ("222", "1"), ("333", "1")]
    citations = next(iter_medline(path, block_rows=100))[0]
    assert citations.height == 20 and set(citations["pmid_version"]) == {"1"}

    only_deletions = tmp_path / "pubmed25n0103.xml.gz"
    only_deletions.write_bytes(update_file_bytes([], deleted=("444",)))
    assert list(iter_medline(only_deletions, 100, require_records=False)) == []
    with pytest.raises(DataContractError, match="holds no <PubmedArticle>"):
        list(iter_medline(only_deletions, 100))
    assert deleted_citations(only_deletions) == [("444", "1")]
