"""Content hashes and data fingerprints, computed once per file."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(root: Path, files: list[Path]) -> dict:
    """Which data a model came from: file count and a hash of the sorted relative paths."""
    rel = sorted(p.relative_to(root).as_posix() for p in files)
    return {"files": len(rel), "file_list_sha256": hashlib.sha256("\n".join(rel).encode()).hexdigest()}
