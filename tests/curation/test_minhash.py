import datasketch
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curation.fuzzy_dedup.config import MinHashConfig
from curation.fuzzy_dedup.minhash import band_keys, permutations, signatures
from curation.fuzzy_dedup.shingles import mix32, shingle_sets


def _python_polynomial(values) -> int:
    h = 0
    for v in values:
        h = (h * 0x100000001B3 + int(v)) % (1 << 64)
    return h


def _mix(value: int) -> int:
    return int(mix32(np.array([value], dtype=np.uint64))[0])


def _reference_shingles(text: str, kind: str, size: int) -> set[int]:
    """Slow twin: normalised with Python's split, each shingle hashed with a Python loop."""
    words = pc.utf8_lower(pa.array([text]))[0].as_py().split()
    units = [ord(c) for c in " ".join(words)] if kind == "char" else [_mix(_python_polynomial(map(ord, w))) for w in words]
    windows = [units[i:i + size] for i in range(max(1, len(units) - size + 1))] if units else []
    return {_mix(_python_polynomial(w)) for w in windows}


@pytest.fixture(scope="module")
def licence_texts():
    paths = ["/usr/share/common-licenses/GPL-2", "/usr/share/common-licenses/LGPL-2.1",
             "/usr/share/common-licenses/Apache-2.0"]
    return [open(p).read()[:3000] for p in paths] + [
        "", "tiny", " \t\n", "Ünïcödé wörds ünd  spaces\n日本語の文章です 😀 emoji",
        "\u00a0non-breaking\u00a0spaces,\u2003an em space\u3000and\x0bvertical\x1ctabs\u2028 ",
    ]


def _set(sets, doc: int) -> list[int]:
    return sets.values[sets.offsets[doc]:sets.offsets[doc + 1]].tolist()


@pytest.mark.parametrize("shingle", ["char:24", "char:5", "word:5", "word:2"])
def test_shingle_sets_equal_the_python_twin(licence_texts, shingle):
    kind, size = shingle.split(":")
    sets = shingle_sets(pa.chunked_array([licence_texts[:4], licence_texts[4:]]), shingle)
    for doc, text in enumerate(licence_texts):
        assert _set(sets, doc) == sorted(_reference_shingles(text, kind, int(size))), (shingle, doc)


def test_whitespace_is_pythons():
    code_points = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    sets = shingle_sets(pa.array([f"a{chr(c)}b" for c in code_points]), "word:1")
    splits = np.array([len(f"a{chr(c)}b".split()) for c in code_points])
    assert np.array_equal(sets.sizes, splits)


def test_signatures_equal_datasketch(licence_texts):
    config = MinHashConfig()
    sets = shingle_sets(pa.array(licence_texts), config.shingle)
    sig = signatures(sets, config)
    for doc in range(len(licence_texts)):
        reference = datasketch.MinHash(num_perm=260, seed=42, hashfunc=lambda x: x, scheme="legacy")
        for h in _set(sets, doc):
            reference.update(h)
        assert np.array_equal(sig[doc], reference.hashvalues.astype(np.uint32)), doc


def test_permutations_are_datasketchs():
    a, b = permutations(260, 42)
    reference = datasketch.MinHash(num_perm=260, seed=42, scheme="legacy").permutations
    assert np.array_equal(a, reference[0]) and np.array_equal(b, reference[1])


def test_near_duplicates_share_bands_and_estimate_jaccard(licence_texts):
    text = licence_texts[0]
    edited = text.replace("software", "programs", 2)
    sets = shingle_sets(pa.array([text, edited, licence_texts[2]]), "char:24")
    sig = signatures(sets)
    keys = band_keys(sig)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()
    estimate = (sig[0] == sig[1]).mean()
    a, b = set(_set(sets, 0)), set(_set(sets, 1))
    assert abs(estimate - len(a & b) / len(a | b)) < 0.1


def test_config_errors():
    with pytest.raises(ValueError, match="bands x rows must equal num_perm"):
        MinHashConfig(bands=10)
    with pytest.raises(ValueError, match="shingle must look like"):
        MinHashConfig(shingle="char")
