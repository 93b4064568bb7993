"""A training checkpoint to a Hugging Face NemotronH directory (`ccforge export-hf`).

Runs in one process without a process group: DCP reassembles the sharded weights (FSDP
shards and, from an expert-parallel run, the experts split over ranks) into a plain model,
which `save_hf` writes with config.json. The tokenizer the token shards were made with is
copied alongside, so `AutoTokenizer` and `AutoModelForCausalLM` both load it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from training.model import HybridConfig, HybridForCausalLM, save_hf
from training.trainer.checkpoint import latest_checkpoint, load_model_weights, read_checkpoint_meta

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or the newest one of a run directory (OUT or OUT/checkpoints)."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    for root in (path / "checkpoints", path):
        if (found := latest_checkpoint(root)) is not None:
            return found
    raise FileNotFoundError(f"{path}: no checkpoint (expected step-NNNNNNNN/ with meta.json, or a run directory)")


def export_hf(checkpoint: str | Path, output: str | Path, *, dtype: torch.dtype = torch.bfloat16,
              tokenizer: str | Path | None = None) -> Path:
    """Write `output` (config.json, model.safetensors, tokenizer files); returns the checkpoint used."""
    source = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_meta(source)
    model = HybridForCausalLM(HybridConfig(**meta["model_config"]))
    load_model_weights(source, model)
    router_biases = {name: buf.clone() for name, buf in model.named_buffers() if name.endswith("e_score_correction_bias")}
    model.to(dtype)
    for name, value in router_biases.items():  # HF keeps the score-correction bias in float32
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, value)
    save_hf(model, output)
    tokenizer_dir = Path(tokenizer or meta.get("tokenizer") or "")
    if str(tokenizer_dir) and tokenizer_dir.is_dir():
        for name in _TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, Path(output) / name)
    return source
