"""Session fixtures: real English documents with quality columns, and tiny causal LMs built here."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from classifiers.ensemble import quality_levels
from curation.extract import Extractor
from curation.io.readers import RAW_WARC_SCHEMA
from flows.demo.demo_model import build_demo_model

#: A minimal chat template (system/user/assistant turns), to test the chat-template path.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if not loop.last or add_generation_prompt %}</s>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def documents(handbook_pages) -> pa.Table:
    """12 extracted Debian handbook pages: id, text, url, source, language, quality columns.

    Buckets cycle through 0, 5, 10, 15, 19 (levels low, low, medium-low, medium, high).
    """
    rows = [{"id": f"doc{i:02d}", "url": f"https://handbook.example/{p.name}", "source": "handbook",
             "crawl_date": "2026-11-01", "content_type": "text/html", "payload": p.read_bytes()}
            for i, p in enumerate(handbook_pages["en-US"][30:44])]
    docs = Extractor().run(pa.Table.from_pylist(rows, schema=RAW_WARC_SCHEMA)).kept.slice(0, 12)
    assert docs.num_rows == 12
    buckets = [[0, 5, 10, 15, 19][i % 5] for i in range(12)]
    return (docs.append_column("language", pa.array(["en"] * 12))
            .append_column("quality_bucket", pa.array(buckets, pa.int8()))
            .append_column("quality_level", pa.array(quality_levels(buckets).tolist(), pa.string())))


@pytest.fixture
def shards(tmp_path: Path, documents: pa.Table) -> list[str]:
    """The documents as two Parquet shards."""
    paths = []
    for k, table in enumerate((documents.slice(0, 6), documents.slice(6))):
        path = tmp_path / "in" / f"part-{k}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, documents: pa.Table) -> Path:
    """An untrained 2-layer Llama (hidden 32) with a byte-level BPE trained on the documents."""
    torch.set_num_threads(1)  # tiny matmuls: more threads only add contention on 2 shared cores
    return build_demo_model(documents["text"].to_pylist(), tmp_path_factory.mktemp("tiny") / "model",
                            vocab_size=1024, hidden_size=32)


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory, documents: pa.Table) -> Path:
    """The same kind of model, with a chat template in its tokenizer."""
    return build_demo_model(documents["text"].to_pylist(), tmp_path_factory.mktemp("chat") / "model",
                            vocab_size=1024, hidden_size=32, chat_template=CHAT_TEMPLATE)
