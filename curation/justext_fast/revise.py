"""jusText's context-sensitive pass (`justext.core.revise_paragraph_classification`) over arrays.

jusText's four loops, as whole-array steps:
1. "good headings": jusText 3.0.2 looks ahead at `class_type`s it has not copied yet (they are
   still ''), so this step never changes a class; it is left out.
2. short paragraphs take a class from the nearest good/bad neighbours on each side (classes of
   step 1, all updates applied together);
3. near-good paragraphs become bad only between two bad neighbours (ignoring near-good ones);
   jusText updates them one by one, but a run of near-good paragraphs shares its neighbours
   and so its outcome, which makes the order irrelevant;
4. headings that were not bad at first become good when a good paragraph starts within
   `max_heading_distance` characters after them (looking only forward, at classes step 4 does
   not change).
Missing neighbours count as bad, as in jusText.
"""

from __future__ import annotations

import numpy as np

from curation.justext_fast.classify import BAD, GOOD, NEARGOOD, SHORT


def revise(cf_class: np.ndarray, is_heading: np.ndarray, lengths: np.ndarray, *, max_heading_distance: int) -> np.ndarray:
    """Final classes (int8 codes) from the context-free ones; `is_heading` already honours `no_headings`."""
    classes = cf_class.copy()
    short = classes == SHORT
    if short.any():
        good_or_bad = (classes == GOOD) | (classes == BAD)
        prev_gb, next_gb = _neighbours(classes, good_or_bad)
        prev_any, next_any = _neighbours(classes, ~short)
        near_good_beyond_bad = (((prev_gb == BAD) & (prev_any == NEARGOOD))
                                | ((next_gb == BAD) & (next_any == NEARGOOD)))
        both_good = (prev_gb == GOOD) & (next_gb == GOOD)
        both_bad = (prev_gb == BAD) & (next_gb == BAD)
        revised = np.where(both_good | (~both_bad & near_good_beyond_bad), GOOD, BAD)
        classes[short] = revised[short]
    near_good = classes == NEARGOOD
    if near_good.any():
        prev_gb, next_gb = _neighbours(classes, ~near_good)
        classes[near_good] = np.where((prev_gb == BAD) & (next_gb == BAD), BAD, GOOD)[near_good]
    headings = is_heading & (classes == BAD) & (cf_class != BAD)
    if headings.any():
        classes[headings & _good_within(classes == GOOD, lengths, max_heading_distance)] = GOOD
    return classes


def _neighbours(classes: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class of the nearest candidate before and after each paragraph (BAD where there is none)."""
    n = len(classes)
    index = np.arange(n)
    last = np.maximum.accumulate(np.where(candidate, index, -1))
    before = np.concatenate(([-1], last[:-1]))
    first = np.minimum.accumulate(np.where(candidate, index, n)[::-1])[::-1]
    after = np.concatenate((first[1:], [n]))
    padded = np.append(classes, BAD)  # index -1 and index n both read this BAD
    return padded[before], padded[after]


def _good_within(good: np.ndarray, lengths: np.ndarray, max_distance: int) -> np.ndarray:
    """Whether the first good paragraph after each one starts at most `max_distance` characters
    after it (the characters of the paragraphs in between): jusText's look-ahead walks while
    the distance so far is within the limit, and the distance only grows."""
    n = len(good)
    index = np.arange(n)
    first = np.minimum.accumulate(np.where(good, index, n)[::-1])[::-1]
    next_good = np.concatenate((first[1:], [n]))
    ends = np.concatenate(([0], np.cumsum(lengths)))  # ends[k]: characters of paragraphs before k
    between = ends[next_good] - ends[np.minimum(index + 1, n)]
    return (next_good < n) & (between <= max_distance)
