"""The batch-file backend on a real vLLM (GPU pool only; vllm lives in its own environment)."""

import os
import shutil
import subprocess

import pytest

from models.llm import batch
from tasks.core.verdict import messages_for, parse_verdict, verdict_schema

VLLM = os.environ.get("PHARMALANE_VLLM", shutil.which("vllm") or "")
MODEL = os.environ.get("PHARMALANE_VLLM_MODEL", "Qwen/Qwen2.5-7B-Instruct")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not VLLM or shutil.which("nvidia-smi") is None,
        reason="needs a GPU and `vllm` (set PHARMALANE_VLLM to its executable)",
    ),
]


def test_vllm_run_batch_answers_every_request_with_a_valid_verdict(tmp_path):
    titles = ["Fatal agranulocytosis after chloramphenicol", "Aspirin in stroke prevention"]
    requests = [
        batch.request(
            f"i{n}", MODEL, messages_for(t, t, []), schema=verdict_schema(), max_tokens=256
        )
        for n, t in enumerate(titles)
    ]
    inputs = batch.write_requests(requests, tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    subprocess.run(
        [VLLM, "run-batch", "-i", str(inputs), "-o", str(out), "--model", MODEL], check=True
    )
    results = batch.read_results(out, model=MODEL)
    assert sorted(results) == ["i0", "i1"]
    for custom_id, result in results.items():
        assert not isinstance(result, Exception)
        parse_verdict(result.text, record=custom_id)
