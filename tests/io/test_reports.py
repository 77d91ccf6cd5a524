import json
import math

from tasks.io.reports import cost_recall_png, read_json, write_json


def test_json_is_written_whole_with_nan_as_null(tmp_path):
    path = write_json({"recall": math.nan, "rows": [{"p": 0.5}]}, tmp_path / "r" / "x.json")
    assert json.loads(path.read_text()) == {"recall": None, "rows": [{"p": 0.5}]}
    assert read_json(path) == {"recall": None, "rows": [{"p": 0.5}]}
    assert read_json(tmp_path / "missing.json") is None
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_the_cost_recall_chart_is_a_png(tmp_path):
    curve = [{"usd_per_1k": 0.1, "recall": 0.5}, {"usd_per_1k": 2.0, "recall": 1.0}]
    path = cost_recall_png(curve, {"all-large": (2.5, 1.0)}, tmp_path / "c.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
