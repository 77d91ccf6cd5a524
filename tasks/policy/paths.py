"""Where a flow parameter may point. Pure apart from resolving links: paths in, paths out.

Anyone who can start a deployment run chooses its parameters, so a path parameter is untrusted
input: a worker must not read ``/etc/passwd`` as a MEDLINE source nor write a report over a
file outside its own folders. A path is allowed only if, with symlinks and ``..`` resolved,
it lies inside one of the configured roots (``paths.allowed_input_roots`` and
``paths.allowed_output_roots``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.errors import DataContractError


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one; both sides already resolved."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def confine(parameter: str, requested: Sequence[str | Path], roots: Sequence[Path]) -> list[Path]:
    """The requested paths resolved, each checked to lie inside a root.

    Args:
        parameter: the flow parameter's name, for the error.
        requested: paths as the caller gave them (relative ones against the working folder).
        roots: the allowed folders.

    Raises:
        DataContractError: a path resolves outside every root (field = the parameter).
    """
    allowed = [Path(r).resolve(strict=False) for r in roots]
    resolved = []
    for raw in requested:
        path = Path(raw).resolve(strict=False)
        if not inside(path, allowed):
            raise DataContractError(
                f"{raw} resolves to {path}, outside the allowed folders "
                f"{[str(r) for r in allowed]}: move it under one of them or configure "
                "paths.allowed_input_roots / paths.allowed_output_roots",
                field=parameter,
            )
        resolved.append(path)
    return resolved
