"""`pharmalane serve` in transit: HTTPS with a certificate, no plain HTTP off loopback.

The server is the real CLI in a subprocess (uvicorn, loopback only); the certificate is a
self-signed one made here with cryptography's x509 builder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.services.triage_access import hash_key
from tests.triage_server import SALT, free_port

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from flows.cli import app; app()", "serve"]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pharmalane test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_env(home: Path) -> dict[str, str]:
    keys = [{"key_id": "tls", "sha256": hash_key(SALT, "k"), "role": "submitter"}]
    return os.environ | {
        "PHARMALANE_HOME": str(home),
        "PHARMALANE_TRIAGE__KEY_SALT": SALT,
        "PHARMALANE_TRIAGE__API_KEYS": json.dumps(keys),
        "PYTHONPATH": str(REPO),
    }


def wait_for_https(process: subprocess.Popen[bytes], url: str, context: ssl.SSLContext) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            return httpx.get(url, verify=context, timeout=2).status_code
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("server did not answer within 120 s")


@pytest.mark.slow
def test_serve_speaks_tls_that_verifies_against_its_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    args = [*CLI, "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            args, cwd=REPO, env=server_env(tmp_path / "home"), stdout=log, stderr=log
        )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        assert wait_for_https(process, f"https://127.0.0.1:{port}/healthz", context) == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=5)  # system CAs: not trusted
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO,
        env=server_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "intake.example.org"])
def test_plain_http_on_a_non_loopback_host_is_refused_before_binding(tmp_path, host):
    done = run_serve(tmp_path, "--host", host, "--port", str(free_port()))
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert f"refusing to serve case reports over plain HTTP on {host}" in message
    assert "--tls-cert" in message and "--insecure-no-tls" in message
    assert not (tmp_path / "home").exists()  # refused before the app (and its store) was built


def test_a_certificate_without_its_key_is_refused(tmp_path):
    cert, _ = self_signed(tmp_path)
    done = run_serve(tmp_path, "--port", str(free_port()), "--tls-cert", str(cert))
    assert done.returncode == 2
    assert "both --tls-cert and --tls-key" in " ".join(done.stderr.split())
