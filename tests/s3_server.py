"""A local S3-compatible server for the tests: moto in server mode, on a loopback port.

It stands in for S3 the way tests/openai_stub.py stands in for a hosted model: the code under
test speaks the real wire protocol (boto3, pyarrow's S3 filesystem, LanceDB's object store) to
a real HTTP server, which keeps the objects in its memory. Conditional puts (``If-None-Match``)
behave as on S3. moto does not check signatures, so any key pair is accepted.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3

KEY_ID, SECRET = "pharmalane-test", "pharmalane-test-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_moto(*, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """moto's S3 server in its own process; yields its endpoint URL; stopped after."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def fresh_bucket(endpoint: str) -> str:
    """A new empty bucket on the server; its name."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    client.create_bucket(Bucket=name)
    return name


def s3_environment(endpoint: str, bucket: str, prefix: str = "pharmalane") -> dict[str, str]:
    """The PHARMALANE_* variables that put the lake and the vectors in ``bucket``."""
    return {
        "PHARMALANE_LAKE_URI": f"s3://{bucket}/{prefix}",
        "PHARMALANE_S3_ENDPOINT": endpoint,
        "PHARMALANE_S3_ACCESS_KEY_ID": KEY_ID,
        "PHARMALANE_S3_SECRET_ACCESS_KEY": SECRET,
    }
