from pathlib import Path

import fasttext
import numpy as np
import pyarrow as pa
import pytest

from classifiers.fasttext_classifier import FastTextClassifier, FastTextTrainConfig, fasttext_line, train_fasttext
from classifiers.metrics import roc_auc
from classifiers.stage import ClassifierSpec, load_classifier


def is_positive(table: pa.Table) -> np.ndarray:
    """Rows labelled high quality ("hq")."""
    return np.array(table["label"].to_pylist()) == "hq"


def test_fasttext_separates_held_out_documentation_from_licences_and_changelogs(fasttext_path, held_out):
    scores = FastTextClassifier(fasttext_path).score(held_out["text"].to_pylist())
    assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc(is_positive(held_out), scores) >= 0.9


def test_loads_a_released_dclm_format_model(tmp_path: Path, train_set, held_out):
    """A supervised .bin trained by fastText itself on DCLM's labels, scored as DCLM does."""
    path = train_fasttext(train_set["text"].to_pylist(), train_set["label"].to_pylist(),
                          tmp_path / "openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin",
                          FastTextTrainConfig(word_ngrams=2, dim=32, bucket=100_000, epoch=10, lr=0.5))
    model = fasttext.load_model(str(path))

    classifier = load_classifier(ClassifierSpec(name="dclm", path=str(tmp_path / "openhermes_reddit_eli5_vs_rw_v2_"
                                                                        "bigram_200k_train.bin")))
    texts = held_out["text"].to_pylist()[:20]
    expected = []
    for text in texts:  # DCLM's classify_fasttext_hq_prob
        (label,), (prob,) = model.predict(" ".join(text.strip().splitlines()))
        expected.append(prob if label == "__label__hq" else 1 - prob)
    np.testing.assert_allclose(classifier.score(texts), np.clip(expected, 0, 1), atol=2e-5)  # softmax clips at 1+1e-5


def test_unknown_positive_label_is_a_clear_error(fasttext_path):
    with pytest.raises(ValueError, match="not '__label__good'"):
        FastTextClassifier(fasttext_path, positive_label="__label__good")


def test_fasttext_line_is_one_line():
    assert fasttext_line("  a\nb\t c\xa0d \n") == "a b\t c\xa0d"


def test_training_on_a_dirty_heap_does_not_diverge(tmp_path: Path):
    """fastText reads some buffers before writing them: blocks of 0xFF bytes (NaN floats) freed just
    before training made 16 of 20 runs stop with "Encountered NaN" until allocations were zero-filled."""
    from token_fixtures import HANDBOOK_EN, documents

    positives = documents(f"{HANDBOOK_EN}/*.html", limit=60, max_chars=2000)
    negatives = [text[k:k + 2000] for path in sorted(Path("/usr/share/common-licenses").glob("*"))
                 for text in [path.read_text(errors="replace")] for k in range(0, 20000, 2000)]
    negatives = [text for text in negatives if len(text) > 200]
    for attempt in range(6):
        junk = [b"\xff" * size for size in (16, 64, 128, 1000, 4096, 60000, 200000, 3200000) for _ in range(50)]
        del junk
        model = train_fasttext(positives + negatives, ["hq"] * len(positives) + ["cc"] * len(negatives),
                               tmp_path / f"model-{attempt}.bin", FastTextTrainConfig(dim=16, bucket=50_000, epoch=5))
        assert FastTextClassifier(model).model.get_labels()
