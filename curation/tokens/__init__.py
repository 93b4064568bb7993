"""Tokenization: train a byte-level BPE, turn curated Parquet into token shards with counts."""

from curation.tokens.shard import TokenStats, tokenize_shard
from curation.tokens.stage import (
    INPUT_IDS, N_BYTES, N_TOKENS, QUALITY_LEVEL, SYNTHETIC_KIND, TOKEN_SCHEMA, TOKENS_METADATA_KEY, GroupCounts,
    TokenizeConfig, TokenizeStage,
)
from curation.tokens.tokenizer import LoadedTokenizer, load_tokenizer, train_tokenizer

__all__ = [
    "INPUT_IDS", "N_BYTES", "N_TOKENS", "QUALITY_LEVEL", "SYNTHETIC_KIND", "TOKEN_SCHEMA", "TOKENS_METADATA_KEY",
    "GroupCounts", "LoadedTokenizer", "TokenStats", "TokenizeConfig", "TokenizeStage", "load_tokenizer",
    "tokenize_shard", "train_tokenizer",
]
