import datasketch
import numpy as np
import pyarrow as pa
import pytest

from curation.exact_dedup import normalized_texts
from curation.fuzzy_dedup.minhash import (
    MinHashConfig, _mix32, band_keys, permutations, shingle_hashes, signatures, window_hashes,
)


def _python_polynomial(values) -> int:
    h = 0
    for v in values:
        h = (h * 0x100000001B3 + int(v)) % (1 << 64)
    return h


def _reference_shingles(text: str, kind: str, size: int) -> list[int]:
    """Slow twin: each shingle hashed with a Python loop, then the same 32-bit mix."""
    if kind == "char":
        units = [ord(c) for c in text]
    else:
        units = [_python_polynomial(ord(c) for c in word) for word in text.split(" ") if word]
        units = [int(_mix32(np.array([u], dtype=np.uint64))[0]) for u in units]
    if not units:
        return []
    windows = [units[i:i + size] for i in range(max(1, len(units) - size + 1))]
    return [int(_mix32(np.array([_python_polynomial(w)], dtype=np.uint64))[0]) for w in windows]


@pytest.fixture(scope="module")
def licence_texts():
    paths = ["/usr/share/common-licenses/GPL-2", "/usr/share/common-licenses/LGPL-2.1",
             "/usr/share/common-licenses/Apache-2.0"]
    return [open(p).read()[:3000] for p in paths] + ["", "tiny", "Ünïcödé wörds ünd  spaces\n日本語の文章です"]


@pytest.mark.parametrize("shingle", ["char:24", "char:5", "word:5", "word:2"])
def test_vectorised_shingle_hashes_equal_the_python_twin(licence_texts, shingle):
    config = MinHashConfig(shingle=shingle)
    hashes, owner = shingle_hashes(pa.array(licence_texts), config)
    normalized = normalized_texts(pa.array(licence_texts)).to_pylist()
    for doc, text in enumerate(normalized):
        expected = _reference_shingles(text, config.shingle_kind, config.shingle_size)
        assert hashes[owner == doc].tolist() == expected, (shingle, doc)


def test_signatures_equal_datasketch(licence_texts):
    config = MinHashConfig()
    sig = signatures(pa.array(licence_texts), config)
    hashes, owner = shingle_hashes(pa.array(licence_texts), config)
    for doc in range(len(licence_texts)):
        reference = datasketch.MinHash(num_perm=260, seed=42, hashfunc=lambda x: x, scheme="legacy")
        for h in hashes[owner == doc].tolist():
            reference.update(h)
        assert np.array_equal(sig[doc], reference.hashvalues.astype(np.uint32)), doc


def test_permutations_are_datasketchs():
    a, b = permutations(260, 42)
    reference = datasketch.MinHash(num_perm=260, seed=42, scheme="legacy").permutations
    assert np.array_equal(a, reference[0]) and np.array_equal(b, reference[1])


def test_near_duplicates_share_bands_and_estimate_jaccard(licence_texts):
    text = licence_texts[0]
    edited = text.replace("software", "programs", 2)
    sig = signatures(pa.array([text, edited, licence_texts[2]]))
    keys = band_keys(sig)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()
    estimate = (sig[0] == sig[1]).mean()
    hashes, owner = shingle_hashes(pa.array([text, edited]), MinHashConfig())
    a, b = set(hashes[owner == 0].tolist()), set(hashes[owner == 1].tolist())
    assert abs(estimate - len(a & b) / len(a | b)) < 0.1


def test_window_hashes_match_python_polynomial():
    values = np.array([5, 1, 2**31, 7, 9, 11], dtype=np.uint32)
    got = window_hashes(values, np.array([0, 2, 3]), np.array([6, 3, 1]))
    assert got.tolist() == [_python_polynomial(values[0:6]), _python_polynomial(values[2:5]), 7]


def test_config_errors():
    with pytest.raises(ValueError, match="bands x rows must equal num_perm"):
        MinHashConfig(bands=10)
    with pytest.raises(ValueError, match="shingle must look like"):
        MinHashConfig(shingle="char")
