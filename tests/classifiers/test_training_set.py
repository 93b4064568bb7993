import gzip
from pathlib import Path

import pyarrow as pa
import pytest

from classifiers.training_set import (
    SourceSpec, TrainingSetConfig, build_training_set, html_to_text, read_document, read_labelled, write_training_set,
)


def test_html_to_text_drops_page_furniture():
    html = ("<html><body><div class='related'>index modules next</div><div role='main'><h1>Title</h1>"
            "<p>Body text.</p><script>var x = 1;</script></div><div class='footer'>x</div></body></html>")
    assert html_to_text(html) == "TitleBody text."


def test_read_document_gunzips_changelogs(tmp_path: Path):
    path = tmp_path / "changelog.Debian.gz"
    path.write_bytes(gzip.compress(b"pkg (1.0-1) unstable; urgency=medium\n\n\n\n  * New upstream release.\n"))
    assert read_document(path) == "pkg (1.0-1) unstable; urgency=medium\n\n  * New upstream release."


def test_labelled_set_has_sources_labels_and_a_stable_split(labelled: pa.Table):
    sources = set(labelled["source"].to_pylist())
    assert sources == {"postgresql_doc", "python_doc", "debian_handbook", "licence", "changelog"}
    assert set(labelled["split"].to_pylist()) == {"train", "test"}
    again = build_training_set(TrainingSetConfig(max_docs_per_source=60, max_chars=4000, test_fraction=0.25))
    assert again.equals(labelled)  # fixed seed: the same documents and split every run


def test_source_without_files_is_a_clear_error(tmp_path: Path):
    config = TrainingSetConfig(sources=(SourceSpec(name="none", label="hq", paths=(str(tmp_path / "*.html"),)),))
    with pytest.raises(ValueError, match="source none: no files match"):
        build_training_set(config)


def test_read_labelled_accepts_fasttext_style_labels(tmp_path: Path):
    table = pa.table({"text": ["a b c", "d e f"], "label": ["__label__hq", "__label__cc"]})
    write_training_set(table, tmp_path / "set.jsonl")
    read = read_labelled(tmp_path / "set.jsonl")
    assert read["label"].to_pylist() == ["hq", "cc"]
    assert read["score"].to_pylist() == [5.0, 0.0]
    assert read["split"].to_pylist() == ["train", "train"]
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "label": "good"}\n')
    with pytest.raises(ValueError, match="labels must be"):
        read_labelled(tmp_path / "bad.jsonl")
