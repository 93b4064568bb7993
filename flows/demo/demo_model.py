"""A tiny causal LM built here, for the quick start, the tests and the benchmark.

No model can be downloaded at run time, so the quick start needs a generator that exists
locally: a byte-level BPE trained on the given texts and a Llama-architecture model of a few
hundred thousand parameters, optionally trained for a few dozen steps on the same texts so
that it writes word-like English. Its answers carry no meaning: it proves the plumbing
(prompting, batching, sampling, resumption, post-processing), not output quality.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from curation.tokens.tokenizer import train_tokenizer

log = logging.getLogger(__name__)


def build_demo_model(texts: list[str], output_dir: str | Path, *, vocab_size: int = 2048, hidden_size: int = 64,
                     layers: int = 2, train_steps: int = 0, seq_len: int = 128, batch_size: int = 16,
                     seed: int = 0, chat_template: str | None = None) -> Path:
    """Tokenizer + `LlamaForCausalLM` saved with `save_pretrained` into `output_dir`."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    output_dir = Path(output_dir)
    train_tokenizer(texts, vocab_size=vocab_size, output_dir=output_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(output_dir), local_files_only=True)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(str(output_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    if train_steps:
        _train(model, tokenizer, texts, steps=train_steps, seq_len=seq_len, batch_size=batch_size, seed=seed)
    model.save_pretrained(str(output_dir))
    return output_dir


def _train(model, tokenizer, texts: list[str], *, steps: int, seq_len: int, batch_size: int, seed: int) -> None:
    """Next-token training on random windows of the texts joined with EOS (AdamW, constant LR).

    Whitespace is folded first: a model this small and this briefly trained would otherwise
    learn mostly that a newline follows a newline.
    """
    folded = [" ".join(t.split()) for t in texts]
    ids = tokenizer.backend_tokenizer.encode_batch_fast(folded, add_special_tokens=False)
    stream = np.fromiter((t for e in ids for t in (*e.ids, tokenizer.eos_token_id)), dtype=np.int64)
    if len(stream) <= seq_len + 1:
        raise ValueError(f"need more than {seq_len + 1} tokens of text to train the demo model")
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        starts = rng.integers(0, len(stream) - seq_len - 1, size=batch_size)
        batch_BT = torch.from_numpy(np.stack([stream[s:s + seq_len + 1] for s in starts]))
        loss = model(input_ids=batch_BT, labels=batch_BT).loss  # the model shifts the labels
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 20 == 0 or step == steps - 1:
            log.info("demo model: step %d/%d loss %.2f", step + 1, steps, loss.item())
    model.eval()
