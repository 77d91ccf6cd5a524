import gzip

import polars as pl
import pytest

from tasks.core.intake import with_derived_fields
from tasks.errors import DataContractError
from tasks.io.medline import read_medline
from tasks.io.quality import load_suite_spec, validate
from tasks.settings import load_settings
from tests.conftest import real_medline_records, write_medline


@pytest.fixture(scope="module")
def records():
    return real_medline_records(6)


def test_reads_real_records_plain_and_gzipped(tmp_path, records):
    plain = write_medline(tmp_path / "a.xml", records)
    zipped = tmp_path / "a.xml.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    citations, rejects = read_medline(plain)
    assert citations.height == 6 and rejects.is_empty()
    assert citations["pmid"].to_list() == read_medline(zipped)[0]["pmid"].to_list()
    assert citations["pub_date_raw"].str.contains(r"^\d{4}").all()


def test_non_utf8_record_is_rejected_by_name_and_the_rest_is_read(tmp_path, records):
    broken = records[1].replace(b"</ArticleTitle>", b"\xff\xfe</ArticleTitle>", 1)
    path = write_medline(tmp_path / "b.xml", [records[0], broken, records[2]])
    citations, rejects = read_medline(path)
    assert citations.height == 2
    (reject,) = rejects.to_dicts()
    assert reject["field"] == "ArticleTitle"
    assert "not UTF-8" in reject["reason"]
    assert reject["record_key"] in broken.decode("utf-8", "replace")
    assert reject["source_row"] == 1


def test_malformed_xml_record_is_rejected_not_fatal(tmp_path, records):
    broken = records[0].replace(b"</ArticleTitle>", b"</ArticleTitel>", 1)
    citations, rejects = read_medline(write_medline(tmp_path / "c.xml", [broken, records[1]]))
    assert citations.height == 1
    assert rejects["reason"].item().startswith("malformed XML")


@pytest.mark.parametrize("content", [b"", b"   \n", b"<PubmedArticleSet></PubmedArticleSet>"])
def test_empty_file_is_a_clear_error_naming_the_file(tmp_path, content):
    path = tmp_path / "empty.xml"
    path.write_bytes(content)
    with pytest.raises(DataContractError, match=r"empty\.xml"):
        read_medline(path)


def test_expectation_suite_names_the_failed_expectation_and_column(tmp_path, records):
    citations, _ = read_medline(write_medline(tmp_path / "d.xml", records[:4]))
    citations = citations.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(None)
        .otherwise(pl.col("abstract"))
        .alias("abstract"),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("2021-13-45"))
        .otherwise(pl.col("pub_date_raw"))
        .alias("pub_date_raw"),
    )
    suite = load_suite_spec(load_settings().config_dir / "expectations" / "intake.yaml")
    failures = validate(with_derived_fields(citations), suite)
    by_row = {r["_row"]: r for r in failures.to_dicts()}
    assert set(by_row) == {1, 2}
    assert by_row[1]["field"] == "abstract"
    assert "expect_column_values_to_not_be_null(abstract)" in by_row[1]["reason"]
    assert by_row[2]["field"] == "pub_date_raw"
    assert "expect_column_values_to_not_be_null(pub_date)" in by_row[2]["reason"]


@pytest.mark.parametrize("read_bytes", [64, 1000, 1 << 20])
def test_streamed_blocks_hold_every_record_once_in_order(tmp_path, read_bytes):
    from tasks.io.medline import iter_medline

    many = real_medline_records(23)
    broken = many[5].replace(b"</ArticleTitle>", b"\xff</ArticleTitle>", 1)
    path = write_medline(tmp_path / "m.xml", [*many[:5], broken, *many[6:]])
    zipped = tmp_path / "m.xml.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    blocks = list(iter_medline(zipped, block_rows=7, read_bytes=read_bytes))
    assert [b[0].height + b[1].height for b in blocks] == [7, 7, 7, 2]
    citations = pl.concat([b[0] for b in blocks])
    rejects = pl.concat([b[1] for b in blocks])
    assert citations["source_row"].to_list() == [i for i in range(23) if i != 5]
    assert rejects["source_row"].to_list() == [5]
    whole, _ = read_medline(path)
    assert citations["pmid"].to_list() == whole["pmid"].to_list()
