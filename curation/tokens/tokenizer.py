"""Byte-level BPE tokenizer training, and loading any local Hugging Face tokenizer directory.

`train_tokenizer` saves a `PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(DIR)`
loads it like any tokenizer on the Hub; `load_tokenizer` takes such a directory (ours, or a
released one such as the Nemotron tokenizer copied to local disk).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

#: Special tokens of tokenizers trained here (the names Llama and Nemotron use for BOS/EOS).
PAD, BOS, EOS = "<pad>", "<s>", "</s>"


@dataclass(frozen=True)
class LoadedTokenizer:
    """The fast (Rust) tokenizer behind a Hugging Face tokenizer, with its special ids."""

    name: str
    backend: tokenizers.Tokenizer = field(repr=False)
    bos_id: int | None
    eos_id: int | None
    vocab_size: int


def train_tokenizer(texts: Iterable[str], *, vocab_size: int, output_dir: str | Path,
                    min_frequency: int = 2) -> LoadedTokenizer:
    """Train a byte-level BPE (GPT-2 style: any byte sequence encodes) and save it to `output_dir`."""
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + 3:
        raise ValueError(f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least 259 "
                         "(256 bytes + 3 special tokens)")
    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[PAD, BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.save_pretrained(str(output_dir))
    return load_tokenizer(str(output_dir))


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> LoadedTokenizer:
    """A local Hugging Face tokenizer directory (cached per process: Dask tasks reuse it)."""
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer.json").exists() and not (Path(path) / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"{path}: not a tokenizer directory (no tokenizer.json or tokenizer_config.json)")
    hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"{path}: a fast tokenizer (tokenizer.json) is needed for batch tokenization")
    return LoadedTokenizer(name=Path(path).name, backend=hf.backend_tokenizer, bos_id=hf.bos_token_id,
                           eos_id=hf.eos_token_id, vocab_size=len(hf))
