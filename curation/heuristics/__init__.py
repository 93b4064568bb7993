"""Heuristic quality filters: Gopher repetition and quality rules, then C4 rules.

Every rule has its own threshold (null switches it off) and its own drop reason; a document is
dropped for the first rule it fails. See `HeuristicsConfig` for which documents are judged.
"""

from curation.heuristics.config import C4Config, GopherQualityConfig, GopherRepetitionConfig, HeuristicsConfig
from curation.heuristics.stage import DROP_REASONS, HeuristicFilter

__all__ = [
    "C4Config", "DROP_REASONS", "GopherQualityConfig", "GopherRepetitionConfig", "HeuristicFilter", "HeuristicsConfig",
]
