"""Mixture files over the session's token shards (`token_dir`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def mixture_file(tmp_path: Path, token_dir: Path) -> Callable[[str], Path]:
    """Write a mixture YAML; `{shards}` in the text stands for the token shard glob."""
    def write(text: str) -> Path:
        path = tmp_path / "mixture.yaml"
        path.write_text(text.replace("{shards}", str(token_dir / "*.parquet")))
        return path
    return write
