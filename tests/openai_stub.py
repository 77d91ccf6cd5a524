"""A loopback HTTP server that speaks the OpenAI chat-completions wire protocol and answers
with scripted payloads: the bad outputs (invalid JSON, wrong types, empty, refusals, slow
answers, 5xx) a real model cannot be made to produce on demand. Real models are tested
against llama.cpp's own server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: the message content (or a raw body / status) and a delay."""

    content: str | None = None
    status: int = 200
    raw: str | None = None
    refusal: str | None = None
    delay_s: float = 0.0
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 120, "completion_tokens": 40}
    )

    def body(self, model: str) -> str:
        if self.raw is not None:
            return self.raw
        payload: dict[str, Any] = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": self.content,
                        "refusal": self.refusal,
                    },
                }
            ],
        }
        if self.usage is not None:
            payload["usage"] = {**self.usage, "total_tokens": sum(self.usage.values())}
        return json.dumps(payload)


def verdict_json(ade: bool = True, **overrides: Any) -> str:
    data = {
        "is_adverse_drug_event": ade,
        "suspect_drugs": ["cisplatin"] if ade else [],
        "reactions": ["nephrotoxicity"] if ade else [],
        "seriousness": ["hospitalisation"] if ade else ["none_stated"],
        "summary": "Cisplatin was followed by acute kidney injury." if ade else "No harm.",
    }
    data.update(overrides)
    return json.dumps(data)


class OpenAIStub:
    """Answers POST /v1/chat/completions with ``responder(request_body)``."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply]):
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "stub"}]}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                stub.requests.append(body)
                reply = stub.responder(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self._send(reply.status, reply.body(body.get("model", "stub")))

            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def scripted(*replies: Reply) -> Callable[[dict[str, Any]], Reply]:
    """Answer with ``replies`` in order, then keep repeating the last one."""
    queue = list(replies)

    def respond(_: dict[str, Any]) -> Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond
