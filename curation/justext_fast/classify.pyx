# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=False
"""jusText's two classification passes over a page's paragraph arrays, as C loops.

`classify` is `justext.core.classify_paragraphs`: tests in jusText's order (link density,
copyright sign, inside a `select`, short, then stop-word density), with densities divided as
jusText divides them (float64 quotients of the same integers), so every comparison comes out
the same.

`revise` is `justext.core.revise_paragraph_classification`'s four loops:
1. "good headings": jusText 3.0.2 looks ahead at `class_type`s it has not copied yet (they are
   still ''), so this step never changes a class; it is left out;
2. short paragraphs take a class from the nearest good/bad neighbours on each side (classes of
   step 1, all updates applied together);
3. near-good paragraphs become bad only between two bad neighbours (ignoring near-good ones),
   one by one in document order as jusText updates them;
4. headings that were not bad at first become good when a good paragraph starts within
   `max_heading_distance` characters after them.
Missing neighbours count as bad, as in jusText. Neighbours come from one scan each way,
so a page costs linear time however its classes fall.
"""

import numpy as np

from libc.stdint cimport int8_t, int64_t

# Paragraph classes as small integers; the order is irrelevant, the names are jusText's.
cdef enum:
    C_BAD, C_SHORT, C_NEARGOOD, C_GOOD
BAD, SHORT, NEARGOOD, GOOD = C_BAD, C_SHORT, C_NEARGOOD, C_GOOD


def classify(list texts, const int64_t[:] lengths, const int64_t[:] words, const int64_t[:] stops, list link_chars,
             list in_select, *, Py_ssize_t length_low, Py_ssize_t length_high, double stopwords_low,
             double stopwords_high, double max_link_density):
    """`cf_class` of each paragraph (int8 codes) from its text, length, word and stop-word counts,
    characters in links and whether it sits inside a `select`."""
    cdef Py_ssize_t i, n = len(texts)
    cf_class = np.empty(n, dtype=np.int8)
    cdef int8_t[:] out = cf_class
    cdef int64_t links
    cdef double link_density, stop_density
    cdef bint any_copyright = _has_copyright("".join(texts))
    for i in range(n):
        links = link_chars[i]
        link_density = <double>links / <double>lengths[i] if lengths[i] > 0 else 0.0
        stop_density = <double>stops[i] / <double>words[i] if words[i] > 0 else 0.0
        if link_density > max_link_density:
            out[i] = C_BAD
        elif any_copyright and _has_copyright(texts[i]):
            out[i] = C_BAD
        elif in_select[i]:
            out[i] = C_BAD
        elif lengths[i] < length_low:
            out[i] = C_BAD if links > 0 else C_SHORT
        elif stop_density >= stopwords_high:
            out[i] = C_GOOD if lengths[i] > length_high else C_NEARGOOD
        elif stop_density >= stopwords_low:
            out[i] = C_NEARGOOD
        else:
            out[i] = C_BAD
    return cf_class


cdef inline bint _has_copyright(str text):
    return "\xa9" in text or "&copy" in text


def revise(const int8_t[:] cf_class, is_heading, const int64_t[:] lengths, *, int64_t max_heading_distance):
    """Final classes (int8 codes) from the context-free ones; `is_heading` (bools) already
    honours `no_headings`."""
    cdef Py_ssize_t i, j, n = cf_class.shape[0]
    classes_array = np.array(cf_class, dtype=np.int8)
    cdef int8_t[:] classes = classes_array
    heading_array = np.asarray(is_heading, dtype=np.uint8)
    cdef const unsigned char[:] heading = heading_array
    if n == 0:
        return classes_array
    previous_array, following_array = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int8)
    previous_any_array, following_any_array = np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int8)
    cdef int8_t[:] previous = previous_array, following = following_array
    cdef int8_t[:] previous_any = previous_any_array, following_any = following_any_array
    revised_array = np.empty(n, dtype=np.int8)
    cdef int8_t[:] revised = revised_array
    cdef int8_t c
    # 2. short paragraphs, against the classes before any of them changes
    _neighbours(classes, previous, following, True)
    _neighbours(classes, previous_any, following_any, False)
    for i in range(n):
        if classes[i] != C_SHORT:
            continue
        if previous[i] == C_GOOD and following[i] == C_GOOD:
            c = C_GOOD
        elif previous[i] == C_BAD and following[i] == C_BAD:
            c = C_BAD
        elif ((previous[i] == C_BAD and previous_any[i] == C_NEARGOOD)
              or (following[i] == C_BAD and following_any[i] == C_NEARGOOD)):
            c = C_GOOD
        else:
            c = C_BAD
        revised[i] = c
    for i in range(n):
        if classes[i] == C_SHORT:
            classes[i] = revised[i]
    # 3. near-good paragraphs, in order: a revised one is the next one's good/bad neighbour
    _neighbours(classes, previous, following, True)
    c = C_BAD
    for i in range(n):
        if classes[i] == C_NEARGOOD:
            classes[i] = C_BAD if c == C_BAD and following[i] == C_BAD else C_GOOD
        if classes[i] == C_GOOD or classes[i] == C_BAD:
            c = classes[i]
    # 4. headings; each looks only forward, at paragraphs this step has not reached
    cdef int64_t distance
    for i in range(n):
        if not (heading[i] and classes[i] == C_BAD and cf_class[i] != C_BAD):
            continue
        j, distance = i + 1, 0
        while j < n and distance <= max_heading_distance:
            if classes[j] == C_GOOD:
                classes[i] = C_GOOD
                break
            distance += lengths[j]
            j += 1
    return classes_array


cdef void _neighbours(int8_t[:] classes, int8_t[:] previous, int8_t[:] following, bint ignore_neargood) noexcept:
    """Class of the nearest good or bad paragraph (or near-good, unless ignored) before and
    after each paragraph; BAD where there is none."""
    cdef Py_ssize_t i, n = classes.shape[0]
    cdef int8_t seen = C_BAD
    for i in range(n):
        previous[i] = seen
        if classes[i] == C_GOOD or classes[i] == C_BAD or (classes[i] == C_NEARGOOD and not ignore_neargood):
            seen = classes[i]
    seen = C_BAD
    for i in range(n - 1, -1, -1):
        following[i] = seen
        if classes[i] == C_GOOD or classes[i] == C_BAD or (classes[i] == C_NEARGOOD and not ignore_neargood):
            seen = classes[i]
