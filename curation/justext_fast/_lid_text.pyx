# cython: language_level=3, boundscheck=False, wraparound=False
"""The text lid.176 reads to choose jusText's stop list: the page's first characters with
scripts, styles, tags and entities blanked, in one C scan that stops as soon as it has enough.

It equals `re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>|&[a-z#0-9]+;", " ",
html[:html_chars], flags=re.IGNORECASE | re.DOTALL)[:max_chars]` (the test holds that regex),
including the regex's Unicode case folding: a letter of the pattern matches every character
whose simple lower case is that letter, and 'i' and 's' also match dotless 'ı' and long 'ſ'
(Python's `re._casefix`). A substitution never looks left of where it starts, so the first
`max_chars` characters of the output are final once written.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport (
    Py_UNICODE_TOLOWER, PyUnicode_4BYTE_KIND, PyUnicode_DATA, PyUnicode_FromKindAndData, PyUnicode_GET_LENGTH,
    PyUnicode_KIND, PyUnicode_READ,
)

cdef Py_UCS4 DOTLESS_I = 0x131, LONG_S = 0x17f


cdef inline bint _is_letter(Py_UCS4 ch, char letter) noexcept:
    """`ch` matches the pattern's lower-case ASCII `letter` under re.IGNORECASE."""
    cdef Py_UCS4 lower = Py_UNICODE_TOLOWER(ch)
    return (lower == <Py_UCS4>letter or (letter == b'i' and lower == DOTLESS_I)
            or (letter == b's' and lower == LONG_S))


cdef bint _matches(unsigned int kind, void* data, Py_ssize_t at, Py_ssize_t n, bytes word) noexcept:
    """`word` (lower-case letters match case-insensitively, other characters exactly) at `at`."""
    cdef Py_ssize_t k, length = len(word)
    cdef const char* chars = word
    cdef Py_UCS4 ch
    if at + length > n:
        return False
    for k in range(length):
        ch = PyUnicode_READ(kind, data, at + k)
        if b'a' <= chars[k] <= b'z':
            if not _is_letter(ch, chars[k]):
                return False
        elif ch != <Py_UCS4>chars[k]:
            return False
    return True


cdef Py_ssize_t _after_first(unsigned int kind, void* data, Py_ssize_t start, Py_ssize_t n, bytes word) noexcept:
    """End of the first `word` at or after `start` (the lazy `.*?` before it), or -1."""
    cdef Py_ssize_t at
    for at in range(start, n - len(word) + 1):
        if _matches(kind, data, at, n, word):
            return at + len(word)
    return -1


cdef inline bint _is_entity_char(Py_UCS4 ch) noexcept:
    """[a-z#0-9] under re.IGNORECASE."""
    cdef Py_UCS4 lower = Py_UNICODE_TOLOWER(ch)
    return ((u'a' <= lower <= u'z') or (u'0' <= lower <= u'9') or lower == u'#' or lower == DOTLESS_I
            or lower == LONG_S)


cdef Py_ssize_t _match_end(unsigned int kind, void* data, Py_ssize_t at, Py_ssize_t n) noexcept:
    """End of the regex's match at `at` (its alternatives in order), or -1."""
    cdef Py_UCS4 ch = PyUnicode_READ(kind, data, at)
    cdef Py_ssize_t end = -1, q
    if ch == u'<':
        if _matches(kind, data, at + 1, n, b"script"):
            end = _after_first(kind, data, at + 7, n, b"</script>")
        if end < 0 and _matches(kind, data, at + 1, n, b"style"):
            end = _after_first(kind, data, at + 6, n, b"</style>")
        if end < 0 and at + 1 < n and PyUnicode_READ(kind, data, at + 1) != u'>':
            end = _after_first(kind, data, at + 2, n, b">")
    elif ch == u'&':
        q = at + 1
        while q < n and _is_entity_char(PyUnicode_READ(kind, data, q)):
            q += 1
        if q > at + 1 and q < n and PyUnicode_READ(kind, data, q) == u';':
            end = q + 1
    return end


def lid_text(str html, Py_ssize_t html_chars, Py_ssize_t max_chars) -> str:
    """The first `max_chars` characters of `html[:html_chars]` with every script, style, tag
    and entity replaced by one space."""
    cdef unsigned int kind = PyUnicode_KIND(html)
    cdef void* data = PyUnicode_DATA(html)
    cdef Py_ssize_t n = min(PyUnicode_GET_LENGTH(html), html_chars), at = 0, end, size = 0
    cdef Py_UCS4* out = <Py_UCS4*>PyMem_Malloc(max(max_chars, 1) * sizeof(Py_UCS4))
    if out is NULL:
        raise MemoryError()
    try:
        while at < n and size < max_chars:
            end = _match_end(kind, data, at, n)
            if end < 0:
                out[size] = PyUnicode_READ(kind, data, at)
                at += 1
            else:
                out[size] = u' '
                at = end
            size += 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, size)
    finally:
        PyMem_Free(out)
