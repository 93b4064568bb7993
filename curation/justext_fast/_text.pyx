# cython: language_level=3, boundscheck=False, wraparound=False
"""jusText's whitespace normalisation and word statistics of a whole page, in one C pass.

`justext.utils.normalize_whitespace` replaces each whitespace run with '\\n' when the run holds
'\\n' or '\\r', else with ' ' (a Python callback per run). A paragraph's `words_count` is the
length of `text.split()` and `stopwords_count` counts `word.lower() in stoplist`. Here the
paragraphs' stripped raw texts are joined by a separator that is neither whitespace nor ever in
lxml's text (NUL: libxml2 turns it into U+FFFD), normalised in one loop over the code points,
and counted in one more over the lower-cased result: no whitespace run crosses the separator,
and no cased or case-ignorable character is whitespace, so lower-casing keeps every word
boundary (and the context of a final sigma ends where the word does). Python's `str.isspace`,
`str.split()` and the regex `\\s` all test `Py_UNICODE_ISSPACE`, as this does.
"""

import numpy as np

from libc.stdint cimport int64_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport (
    Py_UNICODE_ISSPACE, PyUnicode_4BYTE_KIND, PyUnicode_DATA, PyUnicode_FromKindAndData, PyUnicode_GET_LENGTH,
    PyUnicode_KIND, PyUnicode_READ, PyUnicode_Substring,
)

cdef Py_UCS4 SEPARATOR = 0


def normalised_length(str text) -> int:
    """`len(justext.utils.normalize_whitespace(text))`: characters that are not whitespace, plus
    one per whitespace run."""
    cdef unsigned int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Py_ssize_t i, length = 0
    cdef bint in_run = False
    for i in range(PyUnicode_GET_LENGTH(text)):
        if Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)):
            length += not in_run
            in_run = True
        else:
            length += 1
            in_run = False
    return length


cdef str _normalise(str page):
    """`normalize_whitespace(page)` for a page that neither starts nor ends with whitespace."""
    cdef unsigned int kind = PyUnicode_KIND(page)
    cdef void* data = PyUnicode_DATA(page)
    cdef Py_ssize_t i, size = 0, n = PyUnicode_GET_LENGTH(page)
    cdef Py_UCS4 ch
    cdef bint in_run = False, run_breaks = False
    cdef Py_UCS4* out = <Py_UCS4*>PyMem_Malloc(max(n, 1) * sizeof(Py_UCS4))
    if out is NULL:
        raise MemoryError()
    try:
        for i in range(n):
            ch = PyUnicode_READ(kind, data, i)
            if Py_UNICODE_ISSPACE(ch):
                run_breaks = (in_run and run_breaks) or ch == u'\n' or ch == u'\r'
                in_run = True
            else:
                if in_run:
                    out[size] = u'\n' if run_breaks else u' '
                    size += 1
                    in_run = False
                out[size] = ch
                size += 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, size)
    finally:
        PyMem_Free(out)


def page_statistics(list raw_texts, frozenset stoplist):
    """(texts, lengths, words, stop words) of a page's paragraphs from their stripped raw texts:
    jusText's `Paragraph.text`, its length and `words_count`, `stopwords_count` for a lower-case
    `stoplist` (int64 arrays)."""
    cdef Py_ssize_t count = len(raw_texts)
    lengths, words, stops = (np.zeros(count, dtype=np.int64) for _ in range(3))
    cdef int64_t[:] length_of = lengths, words_of = words
    if count == 0:
        return [], lengths, words, stops
    joined = "\x00".join(raw_texts)
    if joined.count("\x00") != count - 1:
        raise ValueError("a text node holds the paragraph separator")
    cdef str page = _normalise(joined)
    cdef unsigned int kind = PyUnicode_KIND(page)
    cdef void* data = PyUnicode_DATA(page)
    cdef Py_ssize_t i, start = 0, paragraph = 0, n = PyUnicode_GET_LENGTH(page)
    cdef Py_UCS4 ch
    cdef list texts = []
    for i in range(n + 1):
        ch = SEPARATOR if i == n else PyUnicode_READ(kind, data, i)
        if ch == SEPARATOR:
            texts.append(PyUnicode_Substring(page, start, i))
            length_of[paragraph] = i - start
            words_of[paragraph] += 1  # a normalised, stripped, non-empty text: one more word than gaps
            paragraph += 1
            start = i + 1
        elif ch == u' ' or ch == u'\n':
            words_of[paragraph] += 1
    if stoplist:
        _count_stop_words(page.lower(), stoplist, stops)
    return texts, lengths, words, stops


cdef int _count_stop_words(str lowered, frozenset stoplist, int64_t[:] stops) except -1:
    cdef unsigned int kind = PyUnicode_KIND(lowered)
    cdef void* data = PyUnicode_DATA(lowered)
    cdef Py_ssize_t i, start = 0, paragraph = 0, n = PyUnicode_GET_LENGTH(lowered)
    cdef Py_UCS4 ch
    for i in range(n + 1):
        ch = SEPARATOR if i == n else PyUnicode_READ(kind, data, i)
        if ch == SEPARATOR or Py_UNICODE_ISSPACE(ch):
            if i > start and PyUnicode_Substring(lowered, start, i) in stoplist:
                stops[paragraph] += 1
            start = i + 1
            paragraph += ch == SEPARATOR
    return 0
