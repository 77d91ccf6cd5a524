"""Update-file names, order and .md5 companions (source medline-updates)."""

from __future__ import annotations

import pytest

from tasks.core.update_files import expected_md5, file_order, files_after, listed_files

APACHE = """<html><head><title>Index of /pubmed/updatefiles</title></head><body><pre>
<a href="?C=N;O=D">Name</a> <a href="?C=M;O=A">Last modified</a>
<a href="/pubmed/">Parent Directory</a>
<a href="pubmed25n1300.xml.gz">pubmed25n1300.xml.gz</a>  2025-06-02 14:03  4.0M
<a href="pubmed25n1300.xml.gz.md5">pubmed25n1300.xml.gz.md5</a>  2025-06-02 14:03  60
<A HREF='https://mirror.example/pubmed/updatefiles/pubmed24n1299.xml.gz'>old</A>
<a href=pubmed25n1274.xml.gz>pubmed25n1274.xml.gz</a>
<a href="pubmed25n1300.xml.gz">again</a>
<a href="pubmed25n1301.xml.gz.part">partial</a> <a href="README.txt">README.txt</a>
pubmed25n9999.xml.gz (named in text, not linked)
</pre></body></html>"""


def test_a_listing_gives_each_linked_update_file_once_in_file_order():
    assert listed_files(APACHE) == [
        "pubmed24n1299.xml.gz",
        "pubmed25n1274.xml.gz",
        "pubmed25n1300.xml.gz",
    ]
    assert listed_files("<html>no files yet</html>") == []


def test_file_order_is_year_then_number_not_text():
    assert file_order("pubmed25n0002.xml.gz") < file_order("pubmed25n0010.xml.gz")
    assert file_order("pubmed24n1400.xml.gz") < file_order("pubmed25n0001.xml.gz")
    with pytest.raises(ValueError, match="not a MEDLINE update file name"):
        file_order("pubmed25n1.xml.gz")


NAMES = ["pubmed25n0003.xml.gz", "pubmed25n0001.xml.gz", "pubmed25n0002.xml.gz"]


@pytest.mark.parametrize(
    ("watermark", "start_from", "expected"),
    [
        ("pubmed25n0001.xml.gz", None, ["pubmed25n0002.xml.gz", "pubmed25n0003.xml.gz"]),
        ("pubmed25n0003.xml.gz", "pubmed25n0001.xml.gz", []),  # a watermark wins
        (None, None, ["pubmed25n0003.xml.gz"]),  # first run: only the newest
        (None, "pubmed25n0002.xml.gz", ["pubmed25n0002.xml.gz", "pubmed25n0003.xml.gz"]),
    ],
)
def test_files_after_the_watermark(watermark, start_from, expected):
    assert files_after(NAMES, watermark, start_from) == expected


def test_an_md5_companion_is_read_and_checked_against_its_file_name():
    digest = "0123456789abcdef0123456789ABCDEF"
    name = "pubmed25n0001.xml.gz"
    assert expected_md5(name, f"MD5({name})= {digest}\n") == digest.lower()
    with pytest.raises(ValueError, match="not of pubmed25n0001"):
        expected_md5(name, f"MD5(pubmed25n0002.xml.gz)= {digest}")
    with pytest.raises(ValueError, match="does not read"):
        expected_md5(name, "<html>404</html>")
