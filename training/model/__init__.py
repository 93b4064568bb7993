"""The ccforge hybrid Mamba-2 / attention / MoE model (Nemotron-H family), HF-compatible."""

from training.model.config import HybridConfig
from training.model.hf_interop import load_hf, save_hf
from training.model.info import count_parameters, format_model_info
from training.model.model import CausalLMOutput, HybridForCausalLM
from training.model.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "CausalLMOutput",
    "HybridConfig",
    "HybridForCausalLM",
    "count_parameters",
    "format_model_info",
    "get_preset",
    "load_hf",
    "save_hf",
]
