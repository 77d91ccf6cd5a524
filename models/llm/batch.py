"""The batch-file backend: OpenAI batch JSONL in, OpenAI batch JSONL out.

On the GPU pool the file is run by vLLM in its own environment (vllm cannot share a venv with
Prefect)::

    vllm run-batch -i requests.jsonl -o results.jsonl --model Qwen/Qwen2.5-7B-Instruct

or uploaded to a provider's batch API (priced at its batch discount). Every request carries the
same system prompt first, so vLLM's prefix cache reuses it across the batch. ``run_over_http``
executes a batch file against any OpenAI-compatible server, line by line: the CPU stand-in for
``vllm run-batch`` and how the round trip is tested here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from models.llm.protocol import ChatMessage, ChatResult, LLMBadResponse, parse_completion

CHAT_URL = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    body: dict[str, Any]


def request(
    custom_id: str,
    model: str,
    messages: Sequence[ChatMessage],
    *,
    schema: Mapping[str, Any] | None,
    max_tokens: int,
) -> BatchRequest:
    from models.llm.openai_http import request_body

    body = request_body(model, messages, schema=schema, max_tokens=max_tokens)
    return BatchRequest(custom_id, body)


def write_requests(requests: Sequence[BatchRequest], path: Path) -> Path:
    """Write the batch input file atomically; custom ids must be unique."""
    ids = [r.custom_id for r in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("custom_id values in a batch must be unique")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as out:
        for r in requests:
            line = {"custom_id": r.custom_id, "method": "POST", "url": CHAT_URL, "body": r.body}
            out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_results(path: Path, *, model: str) -> dict[str, ChatResult | LLMBadResponse]:
    """Parse a batch output file: a result per custom id, or the error that line carries."""
    results: dict[str, ChatResult | LLMBadResponse] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LLMBadResponse(f"{path}:{number} is not JSON") from exc
        custom_id = str(line.get("custom_id"))
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code", 200) >= 400:
            detail = line.get("error") or response.get("body")
            results[custom_id] = LLMBadResponse(f"{custom_id}: batch line failed: {detail}")
            continue
        try:
            results[custom_id] = parse_completion(response.get("body"), fallback_model=model)
        except LLMBadResponse as exc:
            results[custom_id] = exc
    return results


def run_over_http(inputs: Path, outputs: Path, base_url: str, *, timeout_s: float = 300.0) -> int:
    """Execute a batch input file against an OpenAI-compatible server; returns lines written.

    ``base_url`` is the server root without ``/v1`` (request urls already carry it).
    """
    written = 0
    tmp = outputs.with_name(f".{outputs.name}.tmp-{os.getpid()}")
    with (
        httpx.Client(timeout=timeout_s) as client,
        tmp.open("w", encoding="utf-8") as out,
    ):
        for raw in inputs.read_text(encoding="utf-8").splitlines():
            line = json.loads(raw)
            try:
                response = client.post(base_url.rstrip("/") + line["url"], json=line["body"])
                status, body, error = response.status_code, response.json(), None
            except (httpx.HTTPError, ValueError) as exc:
                status, body, error = 0, None, {"message": type(exc).__name__}
            record = {
                "id": f"batch-{written}",
                "custom_id": line["custom_id"],
                "response": None if error else {"status_code": status, "body": body},
                "error": error,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    tmp.replace(outputs)
    return written
