"""Content fingerprints of model files: thresholds are only valid for the model that made them."""

from __future__ import annotations

from pathlib import Path

import xxhash

_CHUNK = 1 << 22


def model_fingerprint(path: str | Path) -> str:
    """xxh3-128 of a model file, or of every file in a model directory (names and contents)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = xxhash.xxh3_128()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
